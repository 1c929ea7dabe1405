import BatchPipeline
import DICOMExport
import DICOMImport
import Foundation
import TestSupport
import VolumeGeometry

/// A source series from shared/data and a label map on its grid.
struct ExportFixture {
    let stack: ImageStack
    let loaded: LoadedSeries
    let series: ReferencedSeries

    init(_ folder: String, repairMissingUIDs: Bool = false) throws {
        let scan = try DICOMScanner().scan(SharedData.dataFile(folder))
        stack = scan.stacks[0]
        loaded = try DICOMSeriesLoader().load(stack)
        series = try ReferencedSeries(stack: stack, loaded: loaded, repairMissingUIDs: repairMissingUIDs)
    }

    /// Labels 1–3 drawn on the grid: (1) a ring with a hole on several slices, (2) two separate
    /// islands, (3) a bright-voxel structure from the image itself (irregular, real anatomy).
    func syntheticLabels() -> LabelVolume {
        let shape = loaded.volume.shape
        var labels = LabelVolume(shape: shape, geometry: loaded.volume.geometry, repeating: 0)
        let cy = shape.y / 2, cx = shape.x / 2
        for z in (shape.z / 4)..<max(shape.z / 2, shape.z / 4 + 1) {
            for y in 0..<shape.y { for x in 0..<shape.x {
                let r2 = (y - cy) * (y - cy) + (x - cx) * (x - cx)
                if r2 <= 100 && r2 > 16 { labels[z, y, x] = 1 }
            } }
        }
        for z in (shape.z / 2)..<min(shape.z, shape.z / 2 + 3) {
            for y in 2..<6 { for x in 2..<6 { labels[z, y, x] = 2 } }
            for y in (shape.y - 8)..<(shape.y - 3) { for x in (shape.x - 8)..<(shape.x - 4) { labels[z, y, x] = 2 } }
        }
        let values = loaded.volume.voxels
        let threshold = values.sorted()[values.count * 9 / 10]
        for i in 0..<values.count where labels.voxels[i] == 0 && values[i] > threshold && i / (shape.y * shape.x) > 2 * shape.z / 3 {
            labels.voxels[i] = 3
        }
        return labels
    }

    static let structures = [
        StructureDescription(label: 1, name: "Ring"),
        StructureDescription(label: 2, name: "Islands"),
        StructureDescription(label: 3, name: "Bright", category: .anatomicalStructure),
    ]

    static let algorithm = AlgorithmIdentification(name: "nnseg-test", version: "0.1", parameters: "synthetic labels")
}

/// Runs a validator command and returns (status, combined output).
func runTool(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
    let result = try CommandRunner.run(path, arguments)
    return (result.status, result.stdout + result.stderr)
}
