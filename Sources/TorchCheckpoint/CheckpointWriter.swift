import Foundation
#if canImport(Glibc)
import Glibc
#endif
import ZIPFoundation

/// A value to write into a PyTorch checkpoint (a subset of what `torch.save` pickles).
public indirect enum PickleWritable: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([PickleWritable])
    case tuple([PickleWritable])
    /// A plain dict (keys in order).
    case dict([(PickleWritable, PickleWritable)])
    /// `collections.OrderedDict` (a state dict).
    case orderedDict([(String, PickleWritable)])
    /// A float32 tensor (contiguous); tensors with the same `storage` key share one storage.
    case float32Tensor(shape: [Int], storage: String)
    /// `torch.device(name)`.
    case device(String)
    /// A module-level object by reference (`module.name`), as pickle stores functions and classes.
    case global(module: String, name: String)

    /// From JSON-like Foundation values (plans, dataset.json).
    public static func json(_ value: Any) -> PickleWritable {
        switch value {
        case let v as NSNumber:
            // JSONSerialization marks booleans as "c" and floating point numbers as "d"/"f".
            switch String(cString: v.objCType) {
            case "c", "B": return .bool(v.boolValue)
            case "d", "f": return .float(v.doubleValue)
            default: return .int(v.intValue)
            }
        case let v as String: return .string(v)
        case let v as [Any]: return .list(v.map(json))
        case let v as [String: Any]:
            return .dict(v.keys.sorted().map { (.string($0), json(v[$0]!)) })
        default: return .none
        }
    }
}

/// Writes PyTorch zip checkpoints (`torch.save` format: `archive/data.pkl` protocol 2, one raw
/// little-endian record per storage under `archive/data/`, `archive/byteorder`, `archive/version`),
/// loadable by `torch.load` and by ``TorchCheckpoint``. Written to a temporary file and moved into place,
/// so a crash never leaves a half-written checkpoint under the final name.
public enum CheckpointWriter {
    /// A plain pickle (protocol 2) of a value without tensors, as Python's `pickle.dump` writes one (nnU-Net's
    /// `postprocessing.pkl`).
    public static func pickle(_ value: PickleWritable) throws -> Data {
        var pickle = Pickler()
        pickle.bytes.append(contentsOf: [0x80, 0x02])
        try pickle.write(value, storages: [:])
        pickle.bytes.append(0x2E)  // STOP
        return Data(pickle.bytes)
    }

    public static func write(_ root: PickleWritable, storages: [String: [Float]], to url: URL) throws {
        var pickle = Pickler()
        pickle.bytes.append(contentsOf: [0x80, 0x02])
        try pickle.write(root, storages: storages)
        pickle.bytes.append(0x2E)  // STOP

        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial")
        try? FileManager.default.removeItem(at: temporary)
        do {
            let archive = try Archive(url: temporary, accessMode: .create)
            func add(_ path: String, _ data: Data) throws {
                try archive.addEntry(with: "archive/" + path, type: .file, uncompressedSize: Int64(data.count), compressionMethod: .none) { position, size in
                    data.subdata(in: Int(position)..<(Int(position) + size))
                }
            }
            try add("data.pkl", Data(pickle.bytes))
            try add("byteorder", Data("little".utf8))
            for key in storages.keys.sorted(by: { (Int($0) ?? 0, $0) < (Int($1) ?? 0, $1) }) {
                let values = storages[key]!
                try add("data/\(key)", values.withUnsafeBufferPointer { Data(buffer: $0) })
            }
            try add("version", Data("3\n".utf8))
        }
        // rename(2) replaces an existing checkpoint atomically.
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw CheckpointError(path: url.path, detail: "cannot move the written checkpoint into place (\(reason))")
        }
    }
}

struct Pickler {
    var bytes: [UInt8] = []

    mutating func unicode(_ s: String) {
        let utf8 = Array(s.utf8)
        bytes.append(0x58)  // BINUNICODE
        appendUInt32(UInt32(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    mutating func appendUInt32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    mutating func global(_ module: String, _ name: String) {
        bytes.append(0x63)  // GLOBAL
        bytes.append(contentsOf: Array("\(module)\n\(name)\n".utf8))
    }

    mutating func int(_ v: Int) {
        if v >= 0 && v < 256 {
            bytes.append(0x4B)
            bytes.append(UInt8(v))
        } else if v >= Int(Int32.min) && v <= Int(Int32.max) {
            bytes.append(0x4A)
            withUnsafeBytes(of: Int32(v).littleEndian) { bytes.append(contentsOf: $0) }
        } else {
            bytes.append(0x8A)  // LONG1
            bytes.append(8)
            withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) }
        }
    }

    mutating func write(_ v: PickleWritable, storages: [String: [Float]]) throws {
        switch v {
        case .none: bytes.append(0x4E)
        case .bool(let b): bytes.append(b ? 0x88 : 0x89)
        case .int(let i): int(i)
        case .float(let d):
            bytes.append(0x47)  // BINFLOAT, big-endian
            withUnsafeBytes(of: d.bitPattern.bigEndian) { bytes.append(contentsOf: $0) }
        case .string(let s): unicode(s)
        case .list(let items):
            bytes.append(0x5D)  // EMPTY_LIST
            if !items.isEmpty {
                bytes.append(0x28)  // MARK
                for item in items { try write(item, storages: storages) }
                bytes.append(0x65)  // APPENDS
            }
        case .tuple(let items):
            if items.isEmpty { bytes.append(0x29); return }
            bytes.append(0x28)
            for item in items { try write(item, storages: storages) }
            bytes.append(0x74)  // TUPLE
        case .dict(let pairs):
            bytes.append(0x7D)  // EMPTY_DICT
            if !pairs.isEmpty {
                bytes.append(0x28)
                for (k, value) in pairs { try write(k, storages: storages); try write(value, storages: storages) }
                bytes.append(0x75)  // SETITEMS
            }
        case .orderedDict(let pairs):
            global("collections", "OrderedDict")
            bytes.append(0x29)
            bytes.append(0x52)  // REDUCE
            if !pairs.isEmpty {
                bytes.append(0x28)
                for (k, value) in pairs { unicode(k); try write(value, storages: storages) }
                bytes.append(0x75)
            }
        case .float32Tensor(let shape, let key):
            guard let storage = storages[key] else { throw CheckpointError(path: key, detail: "no storage for tensor") }
            guard storage.count >= shape.reduce(1, *) else {
                throw CheckpointError(path: key, detail: "storage of \(storage.count) floats is smaller than shape \(shape)")
            }
            global("torch._utils", "_rebuild_tensor_v2")
            bytes.append(0x28)
            // Persistent id ('storage', torch.FloatStorage, key, 'cpu', numel).
            bytes.append(0x28)
            unicode("storage")
            global("torch", "FloatStorage")
            unicode(key)
            unicode("cpu")
            int(storage.count)
            bytes.append(0x74)
            bytes.append(0x51)  // BINPERSID
            int(0)
            try write(.tuple(shape.map { .int($0) }), storages: storages)
            var strides = [Int](repeating: 1, count: shape.count)
            for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
            try write(.tuple(strides.map { .int($0) }), storages: storages)
            bytes.append(0x89)
            try write(.orderedDict([]), storages: storages)
            bytes.append(0x74)
            bytes.append(0x52)
        case .global(let module, let name):
            global(module, name)
        case .device(let name):
            global("torch", "device")
            bytes.append(0x28)
            unicode(name)
            bytes.append(0x74)
            bytes.append(0x52)
        }
    }
}
