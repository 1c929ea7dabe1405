import Foundation

/// The project's one JSON value type — nnU-Net's plans and dataset.json (free-form parts such as
/// `arch_kwargs`), the audit log's payloads (hash-chained, so written in one canonical form), and the files
/// nnseg writes in nnU-Net's own byte layout (plans, fingerprint, splits: Python's `json.dump` style).
///
/// Whole numbers are `.int`, others `.double`; objects keep their members in order (written ones in the
/// order given, decoded ones sorted by key), and compare as unordered maps.
public indirect enum JSONValue: Sendable, Equatable, Codable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    // MARK: Reading

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The members as a dictionary (order dropped).
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o.dictionary } else { return nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    /// Any number.
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// A whole number (an integral `.double` too).
    public var int: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .double(let d): return d.rounded() == d ? Int(exactly: d) : nil
        default: return nil
        }
    }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var intArray: [Int]? {
        guard let a = array else { return nil }
        let ints = a.compactMap(\.int)
        return ints.count == a.count ? ints : nil
    }
    public var intMatrix: [[Int]]? {
        guard let a = array else { return nil }
        let rows = a.compactMap(\.intArray)
        return rows.count == a.count ? rows : nil
    }

    /// Parses JSON text; nil when it is not JSON.
    public static func parse(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    // MARK: Codable

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(JSONObject(sortedFrom: try c.decode([String: JSONValue].self))) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o.dictionary)
        }
    }

    // MARK: Writing

    /// Canonical text: keys sorted, no spaces, doubles in their shortest round-trip form (`2448.845`, not
    /// `2448.8449999999998`; whole ones without a fraction, `3600`; non-finite as null) — what the audit log's hash chain seals. The chain hashes the
    /// stored text, so rows written before (`%.17g`) keep verifying.
    public var canonicalJSON: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            guard d.isFinite else { return "null" }
            return d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        case .string(let s): return Self.canonicalString(s)
        case .array(let a): return "[" + a.map(\.canonicalJSON).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.members.sorted { $0.key < $1.key }.map { Self.canonicalString($0.key) + ":" + $0.value.canonicalJSON }
                .joined(separator: ",") + "}"
        }
    }

    /// Python's `json.dump(obj, indent=4)` text (members in order, ASCII-only strings, `repr` floats, no
    /// trailing newline): the byte layout of nnU-Net's plans, fingerprint and splits files.
    public func pythonText(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent + 4), closing = String(repeating: " ", count: indent)
        switch self {
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { pad + $0.pythonText(indent: indent + 4) }.joined(separator: ",\n") + "\n" + closing + "]"
        case .object(let o):
            if o.members.isEmpty { return "{}" }
            return "{\n" + o.members.map { pad + Self.pythonString($0.key) + ": " + $0.value.pythonText(indent: indent + 4) }
                .joined(separator: ",\n") + "\n" + closing + "}"
        default:
            return pythonScalar
        }
    }

    /// One line, Python's `json.dumps(obj)` separators (", ", ": ").
    public func pythonCompactText() -> String {
        switch self {
        case .array(let items): return "[" + items.map { $0.pythonCompactText() }.joined(separator: ", ") + "]"
        case .object(let o):
            return "{" + o.members.map { Self.pythonString($0.key) + ": " + $0.value.pythonCompactText() }.joined(separator: ", ") + "}"
        default: return pythonScalar
        }
    }

    var pythonScalar: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return Self.pythonFloat(d)
        case .string(let s): return Self.pythonString(s)
        case .array, .object: return pythonCompactText()
        }
    }

    /// For logs and messages: compact, keys sorted, whole doubles without a fraction.
    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "\(b)"
        case .int(let i): return "\(i)"
        case .double(let n): return n.rounded() == n && abs(n) < 1e15 ? "\(Int64(n))" : "\(n)"
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.members.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}"
        }
    }

    /// `repr(float)`: shortest round-trip digits (Swift's description uses the same rule and exponent style).
    public static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
        return d.description
    }

    /// A JSON string as Python writes it with `ensure_ascii` (UTF-16 escapes beyond ASCII).
    public static func pythonString(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(unit)!)
            default: out += String(format: "\\u%04x", unit)
            }
        }
        return out + "\""
    }

    static func canonicalString(_ s: String) -> String {
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
}

/// A JSON object's members, in order. Written as a dictionary literal (`["a": .int(1)]`, order then
/// unspecified) or, where order matters, as a list of pairs (`[("a", .int(1)), ("b", .null)]`).
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral {
    public private(set) var members: [(key: String, value: JSONValue)]

    public init(_ members: [(String, JSONValue)]) { self.members = members.map { (key: $0.0, value: $0.1) } }
    public init(_ dictionary: [String: JSONValue]) { members = dictionary.map { (key: $0.key, value: $0.value) } }
    /// Members sorted by key (decoded objects, for a deterministic order).
    public init(sortedFrom dictionary: [String: JSONValue]) {
        members = dictionary.keys.sorted().map { (key: $0, value: dictionary[$0]!) }
    }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self.init(elements) }
    public init(arrayLiteral elements: (String, JSONValue)...) { self.init(elements) }

    public subscript(key: String) -> JSONValue? {
        get { members.first { $0.key == key }?.value }
        set {
            if let i = members.firstIndex(where: { $0.key == key }) {
                if let newValue { members[i].value = newValue } else { members.remove(at: i) }
            } else if let newValue {
                members.append((key: key, value: newValue))
            }
        }
    }

    public var dictionary: [String: JSONValue] { Dictionary(members.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a }) }

    public static func == (a: JSONObject, b: JSONObject) -> Bool { a.dictionary == b.dictionary }
}
