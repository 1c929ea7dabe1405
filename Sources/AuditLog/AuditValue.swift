import Foundation

/// A JSON value with a canonical text form (sorted keys, fixed number formatting) — what the hash chain
/// seals, so that re-serialising never changes a hash.
public indirect enum AuditValue: Equatable, Sendable, Decodable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([AuditValue])
    case object([String: AuditValue])

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var object: [String: AuditValue]? { if case .object(let o) = self { return o } else { return nil } }

    public var canonicalJSON: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? String(format: "%.17g", d) : "null"
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.canonicalJSON).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { Self.quote($0) + ":" + o[$0]!.canonicalJSON }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }

    /// Parses JSON text (for verification and export).
    public static func parse(_ text: String) -> AuditValue? {
        try? JSONDecoder().decode(AuditValue.self, from: Data(text.utf8))
    }
}

extension AuditValue {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([AuditValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: AuditValue].self)) }
    }
}
