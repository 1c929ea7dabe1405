import Foundation
import JSON
import PlansModel

/// nnU-Net's postprocessing (spec §11): "remove all but the largest connected component" for the label
/// sets listed in a model's `postprocessing.json`.
public struct Postprocessing: Sendable, Equatable {
    /// Each step keeps only the largest component(s) of the union of these labels.
    public var steps: [[Int]]
    public var source: String

    /// Finds `postprocessing.json` in the model folder or in its `crossval_results_folds_*` folder;
    /// nil when the model has none.
    public static func find(in modelFolder: URL) throws -> Postprocessing? {
        var candidates = [modelFolder.appendingPathComponent("postprocessing.json")]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: modelFolder.path)) ?? []
        candidates += entries.filter { $0.hasPrefix("crossval_results_folds_") }.sorted()
            .map { modelFolder.appendingPathComponent($0).appendingPathComponent("postprocessing.json") }
        guard let url = candidates.first(where: { FileManager.default.fileExists(atPath: $0.path) }) else { return nil }
        return try Postprocessing(contentsOf: url)
    }

    public init(steps: [[Int]], source: String = "") {
        self.steps = steps
        self.source = source
    }

    public init(contentsOf url: URL) throws {
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url))
        let functions = json["postprocessing_fns"]?.array?.compactMap(\.string) ?? []
        let kwargs = json["postprocessing_kwargs"]?.array ?? []
        guard functions.count == kwargs.count else {
            throw PlansError(file: url.path, key: "postprocessing_kwargs", detail: "needs one entry per function")
        }
        steps = try zip(functions, kwargs).enumerated().map { i, pair in
            guard pair.0.hasSuffix("remove_all_but_largest_component_from_segmentation") else {
                throw PlansError(file: url.path, key: "postprocessing_fns[\(i)]", detail: "\(pair.0) is not supported")
            }
            guard let value = pair.1["labels_or_regions"] else {
                throw PlansError(file: url.path, key: "postprocessing_kwargs[\(i)].labels_or_regions", detail: "missing")
            }
            if let single = value.int { return [single] }
            if let list = value.array {
                // A list may hold labels or (for regions) lists of labels: the union either way.
                return list.flatMap { $0.int.map { [$0] } ?? $0.intArray ?? [] }
            }
            throw PlansError(file: url.path, key: "postprocessing_kwargs[\(i)].labels_or_regions", detail: "must be a label or a list")
        }
        source = url.path
    }

    /// Applies every step in order to a label map of `shape` (z, y, x).
    public func apply(_ segmentation: inout [UInt16], shape: [Int]) {
        for labels in steps { Self.keepLargestComponent(&segmentation, shape: shape, labels: Set(labels.map { UInt16($0) })) }
    }

    /// Keeps every component of the union of `labels` whose size equals the largest (26-connectivity in
    /// 3-D); other voxels of those labels become background.
    static func keepLargestComponent(_ seg: inout [UInt16], shape: [Int], labels: Set<UInt16>) {
        let (d, h, w) = (shape[0], shape[1], shape[2])
        let n = seg.count
        var component = [Int32](repeating: -1, count: n)
        var sizes: [Int] = []
        var stack: [Int] = []
        for start in 0..<n where component[start] < 0 && labels.contains(seg[start]) {
            let id = Int32(sizes.count)
            var size = 0
            component[start] = id
            stack.append(start)
            while let i = stack.popLast() {
                size += 1
                let x = i % w, y = (i / w) % h, z = i / (w * h)
                for dz in -1...1 {
                    let zz = z + dz
                    if zz < 0 || zz >= d { continue }
                    for dy in -1...1 {
                        let yy = y + dy
                        if yy < 0 || yy >= h { continue }
                        for dx in -1...1 {
                            let xx = x + dx
                            if xx < 0 || xx >= w { continue }
                            let j = (zz * h + yy) * w + xx
                            if component[j] < 0 && labels.contains(seg[j]) {
                                component[j] = id
                                stack.append(j)
                            }
                        }
                    }
                }
            }
            sizes.append(size)
        }
        guard let largest = sizes.max() else { return }
        for i in 0..<n where component[i] >= 0 && sizes[Int(component[i])] != largest { seg[i] = 0 }
    }
}
