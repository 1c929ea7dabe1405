import Digest
import Foundation

/// Where the UIDs of written objects come from (issue #17).
///
/// With a seed (the source series UID, the model bundle's hash and the profile's hash), every Series / SOP
/// Instance UID is name-based — the first 128 bits of SHA-256(seed | kind) as a decimal — so writing the same
/// case again with the same model and profile gives the same UIDs and a PACS replaces the objects instead of
/// keeping two SEG series. Without a seed (`--new-uids`) they are random. Under the site's own `root` when
/// given, else under 2.25 (PS3.5 B.2, UUID-derived).
public struct OutputUIDs: Sendable, Equatable {
    public var seed: String?
    public var root: String?

    public init(seed: String?, root: String? = nil) {
        self.seed = seed
        self.root = root
    }

    /// Fresh random UIDs under 2.25.
    public static let fresh = OutputUIDs(seed: nil)

    /// The UID for one object or attribute of the output ("seg-series", "seg-sop", …).
    public func make(_ kind: String) -> String {
        let bits: [UInt8]
        if let seed {
            bits = Array(SHA256.hash(Array("\(seed)|\(kind)".utf8)).bytes.prefix(16))
        } else {
            bits = withUnsafeBytes(of: UUID().uuid) { Array($0) }
        }
        return Self.uid(bits: bits, root: root)
    }

    /// `root` + "." + the decimal of `bits` (cut to fit 64 characters; no leading zero), or 2.25.<decimal>.
    public static func uid(bits: [UInt8], root: String?) -> String {
        var digits = bits
        var decimal: [Character] = []
        while digits.contains(where: { $0 != 0 }) {
            var remainder = 0
            for i in digits.indices {
                let value = remainder * 256 + Int(digits[i])
                digits[i] = UInt8(value / 10)
                remainder = value % 10
            }
            decimal.append(Character(String(remainder)))
        }
        var number = String(decimal.reversed())
        if number.isEmpty { number = "0" }
        let prefix = root ?? "2.25"
        let room = 64 - prefix.count - 1
        number = String(number.prefix(room))
        while number.count > 1 && number.hasPrefix("0") { number.removeFirst() }
        return prefix + "." + number
    }

    /// A site UID root is digits and dots, components without leading zeros, at most 40 characters (so at
    /// least 23 digits, ≈ 76 bits, remain for the name-based part). Returns what is wrong, nil when valid.
    public static func problem(withRoot root: String) -> String? {
        guard !root.isEmpty, root.count <= 40 else { return "must be 1–40 characters" }
        for component in root.split(separator: ".", omittingEmptySubsequences: false) {
            guard !component.isEmpty, component.allSatisfy(\.isASCII), component.allSatisfy(\.isNumber) else {
                return "'\(root)' must be numbers separated by dots"
            }
            guard component == "0" || !component.hasPrefix("0") else { return "component '\(component)' has a leading zero" }
        }
        return nil
    }
}
