import Foundation

/// The CPU's identity as Linux reports it (`/proc/cpuinfo`), for choices that depend on the microarchitecture
/// rather than on the instruction set oneDNN dispatches to (``ConvolutionPrecision/fasterBFloat16``).
public enum CPUIdentity {
    /// `vendor_id` of the first processor ("GenuineIntel", "AuthenticAMD"); nil where it cannot be read.
    public static let vendor: String? = field("vendor_id")

    /// The value of `name` in the first processor's block of `/proc/cpuinfo`.
    static func field(_ name: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        return field(name, in: text)
    }

    /// The value of `name` in the first block of a `/proc/cpuinfo` text.
    static func field(_ name: String, in text: String) -> String? {
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { return nil }  // end of the first processor's block
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name else { continue }
            return parts[1].trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
