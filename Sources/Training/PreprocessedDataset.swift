import Foundation
import CaseLayer

/// One preprocessed training case as `nnseg preprocess` (or nnU-Net with `.npy` storage) writes it:
/// `CASE.npy` (float32 `(c, z, y, x)`), `CASE_seg.npy` (int16 `(1, z, y, x)`), `CASE.json` (class locations).
public struct TrainingCase: Sendable {
    public let identifier: String
    public let channels: Int
    /// Spatial shape `(z, y, x)`.
    public let shape: [Int]
    public let data: [Float]
    public let segmentation: [Int16]
    /// Foreground voxel samples per class (or region) key, each `[z, y, x]`.
    public let classLocations: [(key: [Int], voxels: [[Int]])]
    /// A cascade's previous-stage labels on this case's preprocessed grid.
    public var previousStage: [Int16]? = nil
}

/// The preprocessed cases of one configuration folder, loaded on first use and kept in memory.
public final class PreprocessedDataset: @unchecked Sendable {
    public let folder: URL
    public let identifiers: [String]
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

    public init(folder: URL, identifiers: [String], previousStage: URL? = nil) throws {
        self.folder = folder
        self.identifiers = identifiers
        self.previousStage = previousStage
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

    public func load(_ identifier: String) throws -> TrainingCase {
        lock.lock()
        if let c = cache[identifier] { lock.unlock(); return c }
        lock.unlock()
        var c = try Self.read(folder: folder, identifier: identifier)
        if let previousStage {
            let url = previousStage.appendingPathComponent(identifier + ".npy")
            let array = try Self.npy(url)
            guard array.shape == c.shape || array.shape == [1] + c.shape else {
                throw TrainingError.dataset(file: url.path, problem: "shape \(array.shape) differs from the preprocessed case \(c.shape)")
            }
            c.previousStage = try array.int16s()
        }
        lock.lock()
        cache[identifier] = c
        lock.unlock()
        return c
    }

    static func read(folder: URL, identifier: String) throws -> TrainingCase {
        let dataURL = folder.appendingPathComponent(identifier + ".npy")
        let segURL = folder.appendingPathComponent(identifier + "_seg.npy")
        let jsonURL = folder.appendingPathComponent(identifier + ".json")
        let data = try npy(dataURL)
        let seg = try npy(segURL)
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
        return TrainingCase(identifier: identifier, channels: data.shape[0], shape: Array(data.shape.dropFirst()), data: try data.floats(),
                            segmentation: try seg.int16s(), classLocations: parsed)
    }

    /// A preprocessed array; a file that is not one is a dataset error naming it.
    static func npy(_ url: URL) throws -> NPYArray {
        do { return try NPYArray(contentsOf: url) } catch let error as NPYError {
            throw TrainingError.dataset(file: error.file, problem: error.problem)
        }
    }
}
