/// A Python object as the restricted unpickler rebuilds it. Nothing is ever executed: globals outside a
/// fixed allow-list are refused, and allowed ones are interpreted by Swift code, not called.
public indirect enum PickleValue: Sendable, CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int64)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A reference to an allowed global (e.g. a storage class), before it is applied.
    case global(module: String, name: String)
    /// An allowed object kept opaque (torch.device, numpy dtype): its constructor arguments and state.
    case object(PickleObject)
    /// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`.
    case tensor(TensorReference)
    /// A storage named by a persistent id.
    case storage(StorageReference)

    public var description: String {
        switch self {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return "\(i)"
        case .float(let f): return "\(f)"
        case .string(let s): return "'\(s)'"
        case .bytes(let b): return "bytes(\(b.count))"
        case .tuple(let t): return "(" + t.map(\.description).joined(separator: ", ") + ")"
        case .list(let l): return "[" + l.items.map(\.description).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .global(let m, let n): return "<\(m).\(n)>"
        case .object(let o): return "<\(o.module).\(o.name)\(o.arguments)>"
        case .tensor(let t): return "tensor(\(t.dtype) \(t.shape))"
        case .storage(let s): return "storage(\(s.key))"
        }
    }

    // MARK: Navigation

    /// The value for a string key of a dict.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let d) = self else { return nil }
        return d.entries.first { if case .string(key) = $0.key { return true } else { return false } }?.value
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    public var doubleValue: Double? {
        switch self {
        case .float(let f): return f
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    /// Elements of a tuple or list.
    public var elements: [PickleValue]? {
        switch self {
        case .tuple(let t): return t
        case .list(let l): return l.items
        default: return nil
        }
    }
    public var isNone: Bool { if case .none = self { return true } else { return false } }
}

/// Mutable list (pickle builds lists by appending after memoising them).
public final class PickleList: @unchecked Sendable {
    public internal(set) var items: [PickleValue] = []
}

/// Mutable, insertion-ordered dict.
public final class PickleDict: @unchecked Sendable {
    public internal(set) var entries: [(key: PickleValue, value: PickleValue)] = []

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let k) = key,
           let i = entries.firstIndex(where: { if case .string(k) = $0.key { return true } else { return false } }) {
            entries[i].value = value
        } else {
            entries.append((key, value))
        }
    }
}

/// An allowed global applied to arguments, kept as data.
public final class PickleObject: @unchecked Sendable {
    public let module: String
    public let name: String
    public let arguments: [PickleValue]
    public internal(set) var state: PickleValue?

    init(module: String, name: String, arguments: [PickleValue]) {
        self.module = module
        self.name = name
        self.arguments = arguments
    }
}

/// Element types of torch storages.
public enum TensorDType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    /// From a storage class name such as `FloatStorage`.
    init?(storageClass: String) {
        switch storageClass {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
}

/// `("storage", class, key, location, numel)` from a persistent id.
public struct StorageReference: Sendable, Equatable {
    public let key: String
    public let dtype: TensorDType
    public let location: String
    public let count: Int
}

/// A view into a storage: offset, shape and strides in elements.
public struct TensorReference: Sendable, Equatable {
    public let storage: StorageReference
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
    public var dtype: TensorDType { storage.dtype }
    public var count: Int { shape.reduce(1, *) }
}

/// Why a pickle was refused. Names the opcode or global at fault.
public struct PickleError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// A pickle virtual machine for protocols 2–5 that only understands what PyTorch checkpoints use.
///
/// Allowed globals are interpreted, never imported or called: `collections.OrderedDict`,
/// `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, the `torch.*Storage` classes,
/// `torch.device`, `numpy.dtype`, numpy's `multiarray.scalar` and `_codecs.encode`. Any other global
/// (such as `os.system` or `builtins.eval`) stops loading with an error that names it.
struct RestrictedUnpickler {
    static let allowedGlobals: Set<String> = [
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch.device", "numpy.dtype", "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar",
        "_codecs.encode",
    ]

    let bytes: [UInt8]
    var position = 0
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func isAllowed(module: String, name: String) -> Bool {
        if module == "torch", name.hasSuffix("Storage"), TensorDType(storageClass: name) != nil { return true }
        return allowedGlobals.contains("\(module).\(name)")
    }

    mutating func load() throws -> PickleValue {
        while position < bytes.count {
            let opcode = bytes[position]
            position += 1
            switch opcode {
            case 0x80: position += 1                                            // PROTO
            case 0x95: position += 8                                            // FRAME
            case 0x2E: return try pop()                                         // STOP
            case 0x28: marks.append(stack.count)                                // MARK
            case 0x7D: stack.append(.dict(PickleDict()))                        // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))                        // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                                 // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark()))                      // TUPLE
            case 0x85: let a = try pop(); stack.append(.tuple([a]))             // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))  // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
            case 0x6C:                                                          // LIST
                let list = PickleList()
                list.items = try popMark()
                stack.append(.list(list))
            case 0x64:                                                          // DICT
                let items = try popMark()
                let dict = PickleDict()
                for i in stride(from: 0, to: items.count - 1, by: 2) { dict.set(items[i], items[i + 1]) }
                stack.append(.dict(dict))
            case 0x71: memo[Int(try read(1)[0])] = try top()                    // BINPUT
            case 0x72: memo[Int(try readUInt32())] = try top()                  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                             // MEMOIZE
            case 0x68: stack.append(try memoValue(Int(try read(1)[0])))         // BINGET
            case 0x6A: stack.append(try memoValue(Int(try readUInt32())))       // LONG_BINGET
            case 0x4B: stack.append(.int(Int64(try read(1)[0])))                // BININT1
            case 0x4D: let b = try read(2); stack.append(.int(Int64(UInt16(b[0]) | UInt16(b[1]) << 8)))  // BININT2
            case 0x4A: stack.append(.int(Int64(Int32(bitPattern: try readUInt32()))))  // BININT
            case 0x8A:                                                          // LONG1
                let n = Int(try read(1)[0])
                stack.append(.int(try littleEndianSigned(try read(n))))
            case 0x47:                                                          // BINFLOAT (big endian)
                let b = try read(8)
                stack.append(.float(Double(bitPattern: b.reduce(0) { $0 << 8 | UInt64($1) })))
            case 0x88: stack.append(.bool(true))                                // NEWTRUE
            case 0x89: stack.append(.bool(false))                               // NEWFALSE
            case 0x4E: stack.append(.none)                                      // NONE
            case 0x58: stack.append(.string(try utf8(Int(try readUInt32()))))   // BINUNICODE
            case 0x8C: stack.append(.string(try utf8(Int(try read(1)[0]))))     // SHORT_BINUNICODE
            case 0x43: stack.append(.bytes(try read(Int(try read(1)[0]))))      // SHORT_BINBYTES
            case 0x42: stack.append(.bytes(try read(Int(try readUInt32()))))    // BINBYTES
            case 0x63:                                                          // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93:                                                          // STACK_GLOBAL
                guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
                    throw PickleError(description: "STACK_GLOBAL needs two strings")
                }
                stack.append(try global(module, name))
            case 0x52:                                                          // REDUCE
                let arguments = try pop()
                let callable = try pop()
                stack.append(try reduce(callable, arguments.elements ?? []))
            case 0x81:                                                          // NEWOBJ
                let arguments = try pop()
                let cls = try pop()
                stack.append(try reduce(cls, arguments.elements ?? []))
            case 0x62:                                                          // BUILD
                let state = try pop()
                let target = try top()
                if case .object(let o) = target { o.state = state }             // dicts ignore state (_metadata)
            case 0x51:                                                          // BINPERSID
                stack.append(try persistentLoad(try pop()))
            case 0x73:                                                          // SETITEM
                let value = try pop(), key = try pop()
                guard case .dict(let d) = try top() else { throw PickleError(description: "SETITEM on a non-dict") }
                d.set(key, value)
            case 0x75:                                                          // SETITEMS
                let items = try popMark()
                guard case .dict(let d) = try top() else { throw PickleError(description: "SETITEMS on a non-dict") }
                for i in stride(from: 0, to: items.count - 1, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x61:                                                          // APPEND
                let value = try pop()
                guard case .list(let l) = try top() else { throw PickleError(description: "APPEND on a non-list") }
                l.items.append(value)
            case 0x65:                                                          // APPENDS
                let items = try popMark()
                guard case .list(let l) = try top() else { throw PickleError(description: "APPENDS on a non-list") }
                l.items += items
            default:
                throw PickleError(description: String(format: "pickle opcode 0x%02X at byte %d is not supported", opcode, position - 1))
            }
        }
        throw PickleError(description: "pickle ended without STOP")
    }

    // MARK: Interpretation of allowed globals

    func global(_ module: String, _ name: String) throws -> PickleValue {
        guard Self.isAllowed(module: module, name: name) else {
            throw PickleError(description: "global '\(module).\(name)' is not allowed in a checkpoint; refusing to load (nothing was executed)")
        }
        return .global(module: module, name: name)
    }

    func reduce(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callable else {
            throw PickleError(description: "REDUCE on \(callable), which is not an allowed global")
        }
        switch "\(module).\(name)" {
        case "collections.OrderedDict":
            return .dict(PickleDict())
        case "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, case .storage(let storage) = args[0], let offset = args[1].intValue,
                  let shape = args[2].elements?.compactMap(\.intValue), let strides = args[3].elements?.compactMap(\.intValue)
            else { throw PickleError(description: "malformed _rebuild_tensor_v2 arguments") }
            // Shape, strides and offset index the storage: non-negative, one stride per axis, and a product
            // that cannot overflow (the storage bounds are checked when the values are read).
            guard shape.count == strides.count, shape.count <= 8, offset >= 0, offset < 1 << 40,
                  shape.allSatisfy({ (0...(1 << 31)).contains($0) }), strides.allSatisfy({ (0...(1 << 40)).contains($0) }),
                  shape.reduce(Int64(1), { total, n in
                      let (product, overflow) = total.multipliedReportingOverflow(by: n)
                      return overflow ? Int64.max : product
                  }) <= (1 << 40)
            else { throw PickleError(description: "tensor shape \(shape), strides \(strides), offset \(offset) cannot index a storage") }
            return .tensor(TensorReference(storage: storage, offset: Int(offset), shape: shape.map { Int($0) },
                                           strides: strides.map { Int($0) }))
        case "torch._utils._rebuild_parameter":
            guard let first = args.first, case .tensor = first else {
                throw PickleError(description: "malformed _rebuild_parameter arguments")
            }
            return first
        case "_codecs.encode":
            guard case .string(let text)? = args.first else { throw PickleError(description: "malformed _codecs.encode") }
            // latin-1: each character is one byte.
            return .bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        case "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar":
            return try numpyScalar(args)
        default:
            return .object(PickleObject(module: module, name: name, arguments: args))
        }
    }

    /// numpy scalar(dtype, raw bytes) → int or float.
    func numpyScalar(_ args: [PickleValue]) throws -> PickleValue {
        guard args.count == 2, case .object(let dtype) = args[0], case .string(let code)? = dtype.arguments.first,
              case .bytes(let raw) = args[1]
        else { throw PickleError(description: "malformed numpy scalar") }
        func unsigned() -> UInt64 { raw.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        // The byte count must match the dtype: a longer value would not fit its integer (a file could say anything).
        let sizes: [String: Int] = ["f8": 8, "f4": 4, "i8": 8, "i4": 4, "i2": 2, "i1": 1, "u8": 8, "u4": 4, "u2": 2, "u1": 1, "b1": 1]
        if let size = sizes[code], raw.count != size {
            throw PickleError(description: "numpy scalar of dtype \(code) has \(raw.count) bytes, not \(size)")
        }
        switch code {
        case "f8": return .float(Double(bitPattern: unsigned()))
        case "f4": return .float(Double(Float(bitPattern: UInt32(unsigned()))))
        case "i8", "i4", "i2", "i1": return .int(try littleEndianSigned(raw))
        case "u8", "u4", "u2", "u1": return .int(Int64(bitPattern: unsigned()))
        case "b1": return .bool(raw.first != 0)
        default: return .object(PickleObject(module: "numpy", name: "scalar", arguments: args))
        }
    }

    func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard let parts = pid.elements, parts.count >= 5, case .string("storage") = parts[0],
              case .global(_, let storageClass) = parts[1], let dtype = TensorDType(storageClass: storageClass),
              case .string(let key) = parts[2], case .string(let location) = parts[3], let count = parts[4].intValue
        else { throw PickleError(description: "unsupported persistent id \(pid)") }
        return .storage(StorageReference(key: key, dtype: dtype, location: location, count: Int(count)))
    }

    // MARK: Low-level reads

    mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw PickleError(description: "pickle stack underflow at byte \(position)") }
        return v
    }

    func top() throws -> PickleValue {
        guard let v = stack.last else { throw PickleError(description: "pickle stack empty at byte \(position)") }
        return v
    }

    mutating func popMark() throws -> [PickleValue] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw PickleError(description: "pickle MARK missing") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    func memoValue(_ index: Int) throws -> PickleValue {
        guard let v = memo[index] else { throw PickleError(description: "pickle memo \(index) is empty") }
        return v
    }

    mutating func read(_ n: Int) throws -> [UInt8] {
        guard n >= 0, position + n <= bytes.count else { throw PickleError(description: "pickle truncated at byte \(position)") }
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }

    mutating func readUInt32() throws -> UInt32 {
        let b = try read(4)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    mutating func utf8(_ n: Int) throws -> String { String(decoding: try read(n), as: UTF8.self) }

    mutating func line() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw PickleError(description: "pickle GLOBAL without newline") }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    func littleEndianSigned(_ raw: [UInt8]) throws -> Int64 {
        guard raw.count <= 8 else { throw PickleError(description: "integer wider than 64 bits") }
        if raw.isEmpty { return 0 }
        var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        if raw.last! & 0x80 != 0 && raw.count < 8 { value |= ~UInt64(0) << UInt64(8 * raw.count) }
        return Int64(bitPattern: value)
    }
}
