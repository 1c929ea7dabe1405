import DICOMExport
import DICOMImport
import Foundation
import Testing
import TestSupport
import VolumeGeometry

/// dcmqi, pydicom-seg and dcmrtstruct2nii (Ops/validate/readers_pydicom2.py, their own venv on pydicom 2.x) read a
/// SEG and an RTSTRUCT of ours back (issue #17): every segment's voxel count exactly as the label map, every ROI's
/// within 2 % of what nnseg's own reader rasterises from the contours.
enum ThirdPartyReaders {
    static func check(seg: URL, rtstruct: URL, source: URL, labels: LabelVolume, structures: [StructureDescription]) throws {
        let python = try #require(SharedData.validationPythonPydicom2, "run Ops/setup.sh --test (.venv-validate-pydicom2)")
        let dir = try SharedData.temporaryDirectory("readers")
        defer { try? FileManager.default.removeItem(at: dir) }
        var counts = [Int](repeating: 0, count: 65_536)
        for v in labels.voxels { counts[Int(v)] += 1 }
        let contours = try StructureSetReader.read(rtstruct, onto: labels.geometry, shape: labels.shape, mapping: structures.map { ($0.name, $0.label) })
        var rtCounts = [Int](repeating: 0, count: 65_536)
        for v in contours.labels.voxels { rtCounts[Int(v)] += 1 }
        let expected: [String: Any] = [
            "segments": Dictionary(uniqueKeysWithValues: structures.enumerated().map { ("\($0.offset + 1)", counts[$0.element.label]) }),
            "rois": Dictionary(uniqueKeysWithValues: structures.map { ($0.name, rtCounts[$0.label]) }),
        ]
        let file = dir.appendingPathComponent("expected.json")
        try JSONSerialization.data(withJSONObject: expected).write(to: file)
        let run = try CommandRunner.run(python, [SharedData.repositoryRoot.appendingPathComponent("Ops/validate/readers_pydicom2.py").path,
                                                 seg.path, rtstruct.path, source.path, file.path, dir.path])
        #expect(run.status == 0, "third-party readers: \(run.stdout.suffix(3000)) \(run.stderr.suffix(1500))")
    }
}
