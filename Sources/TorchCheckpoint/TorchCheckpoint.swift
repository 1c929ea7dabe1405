import Foundation
import ZIPFoundation

/// A tensor's values, contiguous, in its own element type (little-endian bytes).
public struct TensorData: Sendable, Equatable {
    public let shape: [Int]
    public let dtype: TensorDType
    /// C-contiguous little-endian element bytes.
    public let bytes: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    /// Values as Float32 (fp16 and bf16 widened exactly; integers converted).
    public func floats() -> [Float] {
        bytes.withUnsafeBytes { raw -> [Float] in
            (0..<count).map { i in
                switch dtype {
                case .float32: return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                case .float16: return Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                case .bfloat16: return Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                case .float64: return Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                case .int64: return Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                case .int32: return Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case .int16: return Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                case .int8: return Float(Int8(bitPattern: raw[i]))
                case .uint8, .bool: return Float(raw[i])
                }
            }
        }
    }
}

/// Errors reading a `.pth` file; each names the file.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let detail: String
    public var description: String { "CHECKPOINT_INVALID: \(path): \(detail)" }
}

/// A PyTorch `.pth` checkpoint (zip container, pickle protocol 2) read without Python.
///
/// ```swift
/// let checkpoint = try TorchCheckpoint(contentsOf: url)
/// let weights = try checkpoint.stateDict(at: "network_weights")   // [(name, TensorReference)]
/// let w = try checkpoint.tensor(weights[0].1).floats()
/// ```
public final class TorchCheckpoint: @unchecked Sendable {
    public let path: String
    /// The unpickled top-level object.
    public let root: PickleValue
    private let archive: Archive
    /// Bytes of the checkpoint file (bounds reservations from zip headers).
    private let fileSize: Int
    private let prefix: String
    private var storageCache: [String: [UInt8]] = [:]
    private let lock = NSLock()

    public init(contentsOf url: URL) throws {
        path = url.path
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            throw CheckpointError(path: url.path, detail: "not a zip archive (\(error))")
        }
        guard let pickleEntry = archive.first(where: { $0.path == "data.pkl" || $0.path.hasSuffix("/data.pkl") }) else {
            throw CheckpointError(path: url.path, detail: "no data.pkl record: not a PyTorch zip checkpoint")
        }
        prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        let fileSize = ((try? FileManager.default.attributesOfItem(atPath: url.path)[.size]) as? NSNumber)?.intValue ?? 0
        try Self.checkDeclaredSize(pickleEntry, fileSize: fileSize, path: url.path)
        if let order = archive[prefix + "byteorder"] {
            try Self.checkDeclaredSize(order, fileSize: fileSize, path: url.path)
            var text = Data()
            _ = try? archive.extract(order, skipCRC32: true) { text.append($0) }
            guard String(decoding: text, as: UTF8.self) == "little" else {
                throw CheckpointError(path: url.path, detail: "byteorder is not little endian")
            }
        }
        // The sizes a zip header declares are the file's word: a reservation is only a hint bounded by the
        // file's size, and extraction stops at a limit (a zip bomb or a lying header ends as an error).
        var pickle = [UInt8]()
        pickle.reserveCapacity(min(Int(clamping: pickleEntry.uncompressedSize), fileSize))
        do {
            _ = try archive.extract(pickleEntry, skipCRC32: true) { chunk in
                guard pickle.count + chunk.count <= Self.maximumPickleBytes else {
                    throw CheckpointError(path: url.path, detail: "data.pkl inflates beyond \(Self.maximumPickleBytes >> 20) MiB")
                }
                pickle.append(contentsOf: chunk)
            }
            var machine = RestrictedUnpickler(pickle)
            root = try machine.load()
        } catch let error as PickleError {
            throw CheckpointError(path: url.path, detail: error.description)
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(path: url.path, detail: "cannot read data.pkl (\(error))")
        }
        self.fileSize = fileSize
    }

    /// A record cannot hold more bytes than the file, and a stored (uncompressed) record cannot inflate: a
    /// header that says otherwise is refused before extraction (reading a lying size chunk by chunk past the end
    /// of the file took seconds per record).
    static func checkDeclaredSize(_ entry: Entry, fileSize: Int, path: String) throws {
        let limit = UInt64(max(fileSize, 0))
        guard entry.compressedSize <= limit, entry.isCompressed || entry.uncompressedSize <= limit else {
            throw CheckpointError(path: path, detail: "record \(entry.path) declares \(entry.isCompressed ? entry.compressedSize : entry.uncompressedSize) "
                                  + "bytes in a file of \(fileSize) bytes")
        }
    }

    /// Limits on what a record may inflate to: the pickle (metadata only) and one tensor storage.
    static let maximumPickleBytes = 256 << 20
    static let maximumStorageBytes = 4 << 30

    /// The ordered (name, tensor) pairs of a state dict found at a top-level key (nil key: the root).
    public func stateDict(at key: String? = nil) throws -> [(name: String, tensor: TensorReference)] {
        let value = key.map { root[$0] } ?? root
        guard case .dict(let dict)? = value else {
            throw CheckpointError(path: path, detail: "\(key ?? "root") is not a state dict")
        }
        return try dict.entries.map { entry in
            guard case .string(let name) = entry.key, case .tensor(let t) = entry.value else {
                throw CheckpointError(path: path, detail: "state dict \(key ?? "root") holds a non-tensor entry \(entry.key)")
            }
            return (name, t)
        }
    }

    /// The contiguous values of a tensor.
    public func tensor(_ reference: TensorReference) throws -> TensorData {
        let storage = try storageBytes(reference.storage)
        let size = reference.dtype.size
        let count = reference.count
        var out = [UInt8](repeating: 0, count: count * size)
        if count == 0 { return TensorData(shape: reference.shape, dtype: reference.dtype, bytes: out) }
        // Largest element offset reached, checked against the storage size.
        let maxOffset = reference.offset + zip(reference.shape, reference.strides).map { ($0 - 1) * $1 }.reduce(0, +)
        guard reference.offset >= 0, maxOffset < storage.count / size else {
            throw CheckpointError(path: path, detail: "tensor view exceeds storage \(reference.storage.key)")
        }
        let contiguous = Self.contiguousStrides(reference.shape)
        if reference.strides == contiguous || reference.shape.count == 0 {
            out.withUnsafeMutableBytes { dst in
                storage.withUnsafeBytes { src in
                    dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[(reference.offset * size)..<((reference.offset + count) * size)]))
                }
            }
        } else {
            // General strided gather.
            var index = [Int](repeating: 0, count: reference.shape.count)
            for linear in 0..<count {
                let source = reference.offset + zip(index, reference.strides).map { $0 * $1 }.reduce(0, +)
                for b in 0..<size { out[linear * size + b] = storage[source * size + b] }
                var axis = index.count - 1
                while axis >= 0 {
                    index[axis] += 1
                    if index[axis] < reference.shape[axis] { break }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
        return TensorData(shape: reference.shape, dtype: reference.dtype, bytes: out)
    }

    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        for i in stride(from: shape.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        return strides
    }

    private func storageBytes(_ storage: StorageReference) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let cached = storageCache[storage.key] { return cached }
        guard let entry = archive[prefix + "data/" + storage.key] else {
            throw CheckpointError(path: path, detail: "storage record data/\(storage.key) is missing")
        }
        try Self.checkDeclaredSize(entry, fileSize: fileSize, path: path)
        var bytes = [UInt8]()
        bytes.reserveCapacity(min(Int(clamping: entry.uncompressedSize), fileSize))
        do {
            _ = try archive.extract(entry, bufferSize: 1 << 20, skipCRC32: true) { chunk in
                guard bytes.count + chunk.count <= Self.maximumStorageBytes else {
                    throw CheckpointError(path: path, detail: "storage data/\(storage.key) inflates beyond \(Self.maximumStorageBytes >> 30) GiB")
                }
                bytes.append(contentsOf: chunk)
            }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(path: path, detail: "cannot read storage data/\(storage.key) (\(error))")
        }
        guard bytes.count >= storage.count * storage.dtype.size else {
            throw CheckpointError(path: path, detail: "storage data/\(storage.key) holds \(bytes.count) bytes, needs \(storage.count * storage.dtype.size)")
        }
        storageCache[storage.key] = bytes
        return bytes
    }
}
