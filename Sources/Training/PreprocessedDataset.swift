import Foundation
import CaseLayer

/// One preprocessed training case as `nnseg preprocess` (or nnU-Net with `.npy` storage) writes it:
/// `CASE.npy` (float32 `(c, z, y, x)`), `CASE_seg.npy` (int16 `(1, z, y, x)`), `CASE.json` (class locations).
public struct TrainingCase: Sendable {
    public let identifier: String
    public let channels: Int
    /// Spatial shape `(z, y, x)`.
    public let shape: [Int]
    public let data: CaseVoxels<Float>
    public let segmentation: CaseVoxels<Int16>
    /// Foreground voxel samples per class (or region) key, each `[z, y, x]`.
    public let classLocations: [(key: [Int], voxels: [[Int]])]
    /// A cascade's previous-stage labels on this case's preprocessed grid.
    public var previousStage: [Int16]? = nil

    public init(identifier: String, channels: Int, shape: [Int], data: CaseVoxels<Float>, segmentation: CaseVoxels<Int16>,
                classLocations: [(key: [Int], voxels: [[Int]])]) {
        self.identifier = identifier
        self.channels = channels
        self.shape = shape
        self.data = data
        self.segmentation = segmentation
        self.classLocations = classLocations
    }

    public init(identifier: String, channels: Int, shape: [Int], data: [Float], segmentation: [Int16], classLocations: [(key: [Int], voxels: [[Int]])]) {
        self.init(identifier: identifier, channels: channels, shape: shape, data: CaseVoxels(data), segmentation: CaseVoxels(segmentation),
                  classLocations: classLocations)
    }

    /// Bytes held in memory (a mapped case holds none of its own: its pages belong to the file).
    public var residentBytes: Int { data.residentBytes + segmentation.residentBytes + (previousStage?.count ?? 0) * 2 }
}

/// A case's voxels: in memory, or read in place from a memory-mapped `.npy` of the same element type.
public struct CaseVoxels<Element: Sendable>: Sendable {
    enum Storage: Sendable {
        case memory([Element])
        case mapped(NPYArray)
    }
    let storage: Storage
    public let count: Int

    public init(_ values: [Element]) {
        storage = .memory(values)
        count = values.count
    }

    /// `array` must hold `Element`s exactly (checked by the caller: `<f4` for Float, `<i2` for Int16).
    init(mapped array: NPYArray) {
        storage = .mapped(array)
        count = array.count
    }

    public var isMapped: Bool { if case .mapped = storage { return true } else { return false } }
    var residentBytes: Int { isMapped ? 0 : count * MemoryLayout<Element>.stride }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        switch storage {
        case .memory(let values): return try values.withUnsafeBufferPointer(body)
        case .mapped(let array):
            return try array.withUnsafeBytes { raw in
                try body(UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: Element.self), count: count))
            }
        }
    }

    public subscript(index: Int) -> Element { withUnsafeBufferPointer { $0[index] } }
}

/// The preprocessed cases of one configuration folder, loaded on first use and kept in a bounded cache.
/// `memory`: each case read whole and decoded (fastest while the dataset fits). `mapped`: each case's arrays
/// are memory-mapped and a patch reads only the pages it crops, which the kernel can drop again — datasets
/// larger than memory train from disk. The cache holds at most `cacheBytes` of decoded cases (and class
/// locations), least recently used first out.
public final class PreprocessedDataset: @unchecked Sendable {
    public enum Storage: String, Sendable, CaseIterable {
        case memory, mapped
    }

    public let folder: URL
    public let identifiers: [String]
    public let storage: Storage
    public let cacheBytes: Int
    /// Cases read from disk (a second read of a case means the cache had dropped it).
    public private(set) var reads = 0
    private var order: [String] = []
    private var cachedBytes = 0
    /// A cascade's previous-stage predictions (`<case>.npy`, the first stage's labels on this configuration's
    /// preprocessed grid, as a first-stage validation writes them into `predicted_next_stage/<configuration>/`).
    public let previousStage: URL?
    private var cache: [String: TrainingCase] = [:]
    private let lock = NSLock()

    /// All cases in `folder` (sorted identifiers, as nnU-Net lists them).
    public convenience init(folder: URL) throws {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else {
            throw TrainingError.dataset(file: folder.path, problem: "no preprocessed data for this configuration; run `nnseg preprocess -c \(folder.lastPathComponent.split(separator: "_", maxSplits: 1).last ?? "")` first")
        }
        let ids = names.filter { $0.hasSuffix(".npy") && !$0.hasSuffix("_seg.npy") }.map { String($0.dropLast(4)) }.sorted()
        guard !ids.isEmpty else {
            throw TrainingError.dataset(file: folder.path, problem: "no preprocessed cases (CASE.npy); run `nnseg preprocess` first")
        }
        try self.init(folder: folder, identifiers: ids)
    }

    public init(folder: URL, identifiers: [String], previousStage: URL? = nil, storage: Storage = .memory, cacheBytes: Int = .max) throws {
        self.folder = folder
        self.identifiers = identifiers
        self.previousStage = previousStage
        self.storage = storage
        self.cacheBytes = cacheBytes
        for id in identifiers {
            for suffix in [".npy", "_seg.npy", ".json"] {
                let path = folder.appendingPathComponent(id + suffix).path
                guard FileManager.default.fileExists(atPath: path) else {
                    throw TrainingError.dataset(file: path, problem: "missing (every case needs CASE.npy, CASE_seg.npy and CASE.json)")
                }
            }
        }
        if let previousStage {
            let missing = identifiers.filter { !FileManager.default.fileExists(atPath: previousStage.appendingPathComponent($0 + ".npy").path) }
            guard missing.isEmpty else {
                throw TrainingError.dataset(file: previousStage.path, problem: "no previous-stage prediction for \(missing.count) case(s) "
                    + "(\(missing.prefix(3).joined(separator: ", "))): train and validate every fold of the first stage first")
            }
        }
    }

    /// On-disk size of the cases' arrays (`CASE.npy` + `CASE_seg.npy`).
    public static func arrayBytes(folder: URL, identifiers: [String]) -> Int {
        identifiers.reduce(0) { total, id in
            total + [".npy", "_seg.npy"].reduce(0) { sum, suffix in
                let attributes = try? FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(id + suffix).path)
                return sum + ((attributes?[.size] as? NSNumber)?.intValue ?? 0)
            }
        }
    }

    /// `memory` when the arrays fit in `budget` bytes, else `mapped`.
    public static func automaticStorage(folder: URL, identifiers: [String], budget: Int) -> Storage {
        arrayBytes(folder: folder, identifiers: identifiers) <= budget ? .memory : .mapped
    }

    public func load(_ identifier: String) throws -> TrainingCase {
        lock.lock()
        if let c = cache[identifier] {
            if let i = order.firstIndex(of: identifier) { order.remove(at: i) }
            order.append(identifier)
            lock.unlock()
            return c
        }
        reads += 1
        lock.unlock()
        var c = try Self.read(folder: folder, identifier: identifier, mapped: storage == .mapped)
        if let previousStage {
            let url = previousStage.appendingPathComponent(identifier + ".npy")
            let array = try Self.npy(url)
            guard array.shape == c.shape || array.shape == [1] + c.shape else {
                throw TrainingError.dataset(file: url.path, problem: "shape \(array.shape) differs from the preprocessed case \(c.shape)")
            }
            c.previousStage = try array.int16s()
        }
        let bytes = c.residentBytes + c.classLocations.reduce(0) { $0 + $1.voxels.count * 3 * MemoryLayout<Int>.stride }
        lock.lock()
        if cache[identifier] == nil {
            cache[identifier] = c
            order.append(identifier)
            cachedBytes += bytes
            sizes[identifier] = bytes
            // Least recently used out, keeping at least the case just read.
            while cachedBytes > cacheBytes, order.count > 1 {
                let evicted = order.removeFirst()
                cache[evicted] = nil
                cachedBytes -= sizes.removeValue(forKey: evicted) ?? 0
            }
        }
        lock.unlock()
        return c
    }

    private var sizes: [String: Int] = [:]

    /// Decoded bytes the cache holds now.
    public var cachedByteCount: Int { lock.lock(); defer { lock.unlock() }; return cachedBytes }

    static func read(folder: URL, identifier: String, mapped: Bool = false) throws -> TrainingCase {
        let dataURL = folder.appendingPathComponent(identifier + ".npy")
        let segURL = folder.appendingPathComponent(identifier + "_seg.npy")
        let jsonURL = folder.appendingPathComponent(identifier + ".json")
        let data = try npy(dataURL, mapped: mapped)
        let seg = try npy(segURL, mapped: mapped)
        guard data.shape.count == 4 else { throw TrainingError.dataset(file: dataURL.path, problem: "shape \(data.shape), expected (c, z, y, x)") }
        guard seg.shape == [1] + data.shape.dropFirst() else {
            throw TrainingError.dataset(file: segURL.path, problem: "shape \(seg.shape) does not match the image \(data.shape)")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL))
        } catch {
            throw TrainingError.dataset(file: jsonURL.path, problem: "not readable JSON (\(error.localizedDescription))")
        }
        guard let json = object as? [String: Any], let locations = json["class_locations"] as? [String: Any] else {
            throw TrainingError.dataset(file: jsonURL.path, problem: "no class_locations object")
        }
        var parsed: [(key: [Int], voxels: [[Int]])] = []
        for (key, value) in locations {
            let digits = key.split { !$0.isNumber && $0 != "-" }.compactMap { Int($0) }
            guard !digits.isEmpty, let rows = value as? [[Int]] else {
                throw TrainingError.dataset(file: jsonURL.path, problem: "class_locations entry '\(key)' is not a list of voxel coordinates")
            }
            // Rows are (channel, z, y, x); keep the spatial part.
            parsed.append((digits, rows.map { Array($0.suffix(3)) }))
        }
        parsed.sort { $0.key.lexicographicallyPrecedes($1.key) }
        // Mapped arrays are used in place when they already hold float32 / int16; others are decoded.
        let voxels = mapped && data.descr == "<f4" ? CaseVoxels<Float>(mapped: data) : CaseVoxels(try data.floats())
        let labels = mapped && seg.descr == "<i2" ? CaseVoxels<Int16>(mapped: seg) : CaseVoxels(try seg.int16s())
        return TrainingCase(identifier: identifier, channels: data.shape[0], shape: Array(data.shape.dropFirst()), data: voxels,
                            segmentation: labels, classLocations: parsed)
    }

    /// A preprocessed array; a file that is not one is a dataset error naming it.
    static func npy(_ url: URL, mapped: Bool = false) throws -> NPYArray {
        do { return try NPYArray(contentsOf: url, mapped: mapped) } catch let error as NPYError {
            throw TrainingError.dataset(file: error.file, problem: error.problem)
        }
    }
}
