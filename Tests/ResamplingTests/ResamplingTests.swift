import DICOMImport
import Foundation
import Testing
import TestSupport
@testable import Resampling

/// nnU-Net's resampling against the reference's own outputs (Fixtures/golden/resampling, made by
/// Ops/golden/make_resampling_golden.py with nnunetv2 2.8.1, scikit-image 0.26, SciPy 1.17).
struct ResamplingTests {
    static let folder = SharedData.fixtures.appendingPathComponent("golden/resampling")

    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let input: String
        let spacing: [Double]
        let target: [Double]
        let newShape: [Int]
        let options: Resample.Options
        var description: String { name }
    }

    static let cases: [Case] = {
        guard let root = try? SharedData.json(folder.appendingPathComponent("cases.json")) as? [String: Any],
              let list = root["cases"] as? [[String: Any]] else { return [] }
        return list.map { c in
            Case(name: c["name"] as! String, input: c["input"] as! String,
                 spacing: (c["spacing"] as! [NSNumber]).map(\.doubleValue), target: (c["target"] as! [NSNumber]).map(\.doubleValue),
                 newShape: c["new_shape"] as! [Int],
                 options: Resample.Options(isSegmentation: c["is_seg"] as! Bool, order: c["order"] as! Int, orderZ: c["order_z"] as! Int))
        }
    }()

    static func grid(_ a: NumpyArray) -> Grid3D {
        Grid3D(shape: Array(a.shape.suffix(3)), values: a.floats.map(Double.init))
    }

    @Test func goldenCasesArePresent() { #expect(Self.cases.count == 5) }

    @Test(arguments: cases)
    func matchesReferenceBitForBit(_ c: Case) throws {
        let input = Self.grid(try NumpyArray(contentsOf: Self.folder.appendingPathComponent(c.input)))
        let expected = try NumpyArray(contentsOf: Self.folder.appendingPathComponent("\(c.name).npy"))
        #expect(Resample.newShape(shape: input.shape, spacing: c.spacing, target: c.target) == c.newShape)
        let ours = Resample.channels([input], newShape: c.newShape, currentSpacing: c.spacing, targetSpacing: c.target, options: c.options)[0]
        #expect(ours.shape == Array(expected.shape.suffix(3)))
        let asFloat = ours.values.map { Float($0) }
        let mismatches = zip(asFloat, expected.floats).filter { $0 != $1 }.count
        let maxDifference = zip(asFloat, expected.floats).map { abs($0 - $1) }.max() ?? 0
        #expect(mismatches == 0, "\(c.name): \(mismatches) of \(asFloat.count) values differ, max \(maxDifference)")
    }

    @Test func separateZDecisions() {
        #expect(Resample.separateAxis(current: [5, 1, 1], target: [2, 0.8, 0.8], force: nil) == 0)
        #expect(Resample.separateAxis(current: [1.5, 1, 1], target: [1, 1.2, 0.9], force: nil) == nil)
        #expect(Resample.separateAxis(current: [1, 1, 1], target: [1, 1, 4], force: nil) == 2)
        #expect(Resample.separateAxis(current: [4, 4, 1], target: [1, 1, 1], force: nil) == nil)  // two low-res axes
        #expect(Resample.separateAxis(current: [1, 3, 1], target: [1, 1, 1], force: true) == 1)
        #expect(Resample.separateAxis(current: [5, 1, 1], target: [1, 1, 1], force: false) == nil)
        #expect(Resample.newShape(shape: [10, 10, 10], spacing: [1, 1, 1], target: [4, 4, 4]) == [2, 2, 2])  // 2.5 → 2
    }

    /// Spec acceptance: the TotalSegmentator CT resampled to 1.5 mm (order 3) within 1e-3 relative.
    @Test func totalSegmentatorCTAt1p5mm() throws {
        let root = try #require(try SharedData.json(Self.folder.appendingPathComponent("cases.json")) as? [String: Any])
        let info = try #require(root["totalseg_ct"] as? [String: Any])
        let stack = try #require(try DICOMScanner().scan(SharedData.dataFile("totalseg-example/example_ct_dicom")).stacks.first)
        let volume = try DICOMSeriesLoader().load(stack).volume
        let g = volume.geometry
        let spacing = [g.spacing.z, g.spacing.y, g.spacing.x]
        let input = Grid3D(shape: volume.shape.zyx, values: volume.voxels.map(Double.init))
        let shape = Resample.newShape(shape: input.shape, spacing: spacing, target: [1.5, 1.5, 1.5])
        #expect(shape == info["new_shape"] as! [Int])
        let start = Date()
        let ours = Resample.channels([input], newShape: shape, currentSpacing: spacing, targetSpacing: [1.5, 1.5, 1.5], options: .data)[0]
        print("resampling 20×512×512 → \(shape): \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        let indices = try NumpyArray(contentsOf: Self.folder.appendingPathComponent("totalseg_ct_1p5mm_indices.npy"))
        let values = try NumpyArray(contentsOf: Self.folder.appendingPathComponent("totalseg_ct_1p5mm_values.npy"))
        var worst = 0.0
        for i in 0..<values.floats.count {
            let (a, b, c) = (Int(indices.floats[3 * i]), Int(indices.floats[3 * i + 1]), Int(indices.floats[3 * i + 2]))
            let v = Double(Float(ours.values[(a * shape[1] + b) * shape[2] + c]))
            worst = max(worst, abs(v - Double(values.floats[i])) / max(1, abs(Double(values.floats[i]))))
        }
        print("TotalSegmentator CT at 1.5 mm: max relative difference over 40,000 samples \(worst)")
        #expect(worst <= 1e-3)
        let sum = ours.values.reduce(0) { $0 + Double(Float($1)) }
        #expect(abs(sum - (info["sum"] as! Double)) <= 1e-6 * abs(info["sum"] as! Double))
        #expect(Float(ours.values.min()!) == Float(info["min"] as! Double))
        #expect(Float(ours.values.max()!) == Float(info["max"] as! Double))
    }
}
