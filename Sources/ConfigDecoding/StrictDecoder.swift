/// A configuration value that did not decode: the key path (`outputs.rtstruct`, `structures[0].color`) and
/// what is wrong with it, in words an operator can act on.
public struct ConfigurationIssue: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let detail: String

    public init(path: String, detail: String) {
        self.path = path
        self.detail = detail
    }

    public var description: String { "\(path.isEmpty ? "(document)" : path): \(detail)" }
}

/// Decodes any `Decodable` configuration strictly, on top of a format's own decoder (YAML, JSON):
/// a key that the type does not declare is refused **at every level**, naming its path and the nearest
/// known key; a wrong type or a missing required value names the path and what was expected.
///
/// Types opt into suggestions by making their `CodingKeys` `CaseIterable`; without it the unknown key is
/// still refused, without a suggestion.
///
/// ```swift
/// let document = try StrictDecoding.decode(Profile.self) { try YAMLDecoder().decode(StrictDecoding.Root<Profile>.self, from: text).value }
/// ```
public enum StrictDecoding {
    /// Wraps the top-level type so that the format's decoder hands its `Decoder` to the strict one.
    public struct Root<T: Decodable>: Decodable {
        public let value: T
        public init(from decoder: Decoder) throws { value = try T(from: StrictDecoder(base: decoder)) }
    }

    /// Runs `body` (which decodes a `Root`) and turns every decoding failure into a ``ConfigurationIssue``.
    public static func decode<T>(_ type: T.Type = T.self, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let issue as ConfigurationIssue {
            throw issue
        } catch let error as DecodingError {
            // Some decoders (Yams) wrap an error thrown while decoding as "data corrupted".
            if case .dataCorrupted(let context) = error, let inner = context.underlyingError as? ConfigurationIssue { throw inner }
            throw issue(error)
        }
    }

    /// `a.b[0].c` from a coding path.
    public static func path(_ keys: [CodingKey]) -> String {
        var text = ""
        for key in keys where key.stringValue != "super" {
            if let index = key.intValue, key.stringValue.hasPrefix("Index") || key.stringValue == "\(index)" {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return text
    }

    static func issue(_ error: DecodingError) -> ConfigurationIssue {
        switch error {
        case .typeMismatch(let type, let context):
            return ConfigurationIssue(path: path(context.codingPath), detail: "must be \(describe(type))")
        case .valueNotFound(let type, let context):
            return ConfigurationIssue(path: path(context.codingPath), detail: "must be \(describe(type))")
        case .keyNotFound(let key, let context):
            return ConfigurationIssue(path: path(context.codingPath + [key]), detail: "required")
        case .dataCorrupted(let context):
            return ConfigurationIssue(path: path(context.codingPath), detail: context.debugDescription)
        @unknown default:
            return ConfigurationIssue(path: "", detail: "\(error)")
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "text"
        case is Bool.Type: return "true or false"
        case is Int.Type: return "a whole number"
        case is Double.Type, is Float.Type: return "a number"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") || name.contains("Sequence") { return "a list" }
            return "a mapping"
        }
    }

    /// The known key closest to `key` (edit distance at most a third of its length, at least 2).
    public static func suggestion(for key: String, among known: [String]) -> String? {
        let limit = max(2, key.count / 3)
        return known.map { ($0, distance(key.lowercased(), $0.lowercased())) }.filter { $0.1 <= limit }.min { $0.1 < $1.1 }?.0
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// Any key, to list what a mapping really holds.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = "\(intValue)"
        self.intValue = intValue
    }
}

/// The strict decoder: forwards to the format's decoder and checks every keyed container it opens.
struct StrictDecoder: Decoder {
    let base: Decoder
    var codingPath: [CodingKey] { base.codingPath }
    var userInfo: [CodingUserInfoKey: Any] { base.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let raw = try base.container(keyedBy: AnyKey.self)
        for key in raw.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where Key(stringValue: key.stringValue) == nil {
            let known = (Key.self as? any CaseIterable.Type).map { Self.names(of: $0) } ?? []
            let hint = StrictDecoding.suggestion(for: key.stringValue, among: known).map { "did you mean \($0)?" }
            let list = known.isEmpty ? nil : "known: " + known.sorted().joined(separator: ", ")
            throw ConfigurationIssue(path: StrictDecoding.path(codingPath + [key]),
                                     detail: "unknown key" + ([hint, list].compactMap { $0 }.isEmpty ? "" : " (" + [hint, list].compactMap { $0 }.joined(separator: "; ") + ")"))
        }
        return KeyedDecodingContainer(StrictKeyedContainer<Key>(base: try base.container(keyedBy: type)))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer { StrictUnkeyedContainer(base: try base.unkeyedContainer()) }
    func singleValueContainer() throws -> SingleValueDecodingContainer { StrictSingleValueContainer(base: try base.singleValueContainer(), decoder: self) }

    static func names<C: CaseIterable>(of type: C.Type) -> [String] {
        type.allCases.compactMap { ($0 as? CodingKey)?.stringValue }
    }

    /// Primitives decode through the format's container (its type checks); everything else strictly.
    static func isPrimitive<T>(_ type: T.Type) -> Bool {
        type == String.self || type == Bool.self || type == Int.self || type == Double.self || type == Float.self
            || type == Int64.self || type == UInt8.self || type == UInt16.self || type == Int32.self || type == UInt32.self || type == UInt64.self
    }
}

struct StrictKeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    var base: KeyedDecodingContainer<Key>
    var codingPath: [CodingKey] { base.codingPath }
    var allKeys: [Key] { base.allKeys }
    func contains(_ key: Key) -> Bool { base.contains(key) }
    func decodeNil(forKey key: Key) throws -> Bool { try base.decodeNil(forKey: key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        if StrictDecoder.isPrimitive(type) { return try base.decode(type, forKey: key) }
        return try T(from: StrictDecoder(base: try base.superDecoder(forKey: key)))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try StrictDecoder(base: try base.superDecoder(forKey: key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        StrictUnkeyedContainer(base: try base.nestedUnkeyedContainer(forKey: key))
    }

    func superDecoder() throws -> Decoder { StrictDecoder(base: try base.superDecoder()) }
    func superDecoder(forKey key: Key) throws -> Decoder { StrictDecoder(base: try base.superDecoder(forKey: key)) }
}

struct StrictUnkeyedContainer: UnkeyedDecodingContainer {
    var base: UnkeyedDecodingContainer
    var codingPath: [CodingKey] { base.codingPath }
    var count: Int? { base.count }
    var isAtEnd: Bool { base.isAtEnd }
    var currentIndex: Int { base.currentIndex }
    mutating func decodeNil() throws -> Bool { try base.decodeNil() }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if StrictDecoder.isPrimitive(type) { return try base.decode(type) }
        return try T(from: StrictDecoder(base: try base.superDecoder()))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try StrictDecoder(base: try base.superDecoder()).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { StrictUnkeyedContainer(base: try base.nestedUnkeyedContainer()) }
    mutating func superDecoder() throws -> Decoder { StrictDecoder(base: try base.superDecoder()) }
}

struct StrictSingleValueContainer: SingleValueDecodingContainer {
    var base: SingleValueDecodingContainer
    let decoder: StrictDecoder
    var codingPath: [CodingKey] { base.codingPath }
    func decodeNil() -> Bool { base.decodeNil() }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if StrictDecoder.isPrimitive(type) { return try base.decode(type) }
        // A wrapper type decoding its content as a single value: the content is checked the same way.
        return try T(from: decoder)
    }
}
