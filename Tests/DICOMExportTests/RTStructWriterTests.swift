import BatchPipeline
import Contours
import DICOMExport
import DICOMImport
import Foundation
import NIfTI
import Testing
import TestSupport
import VolumeGeometry

struct RTStructWriterTests {
    static let exact = RTStructOptions(minimumIslandMM3: 0, fillHolesMM3: 0)

    /// Reads an RTSTRUCT back with nnseg's importer and rasterises it (even-odd, pixel centres) onto
    /// the source grid: one label map.
    static func readBack(_ url: URL, grid: ImageVolume, structures: [StructureDescription]) throws -> LabelVolume {
        let file = try DICOMFile(path: url.path)
        let toVoxel = try #require(PatientToVoxel(grid.geometry))
        var labels = LabelVolume(shape: grid.shape, geometry: grid.geometry, repeating: 0)
        let rois = file.itemCount(atPath: "3006,0039") ?? 0
        for r in 0..<rois {
            let label = UInt16(structures[r].label)
            var perSlice: [Int: [Polygon]] = [:]
            for c in 0..<(file.itemCount(atPath: "3006,0039[\(r)]/3006,0040") ?? 0) {
                let values = try #require(file.doubles(atPath: "3006,0039[\(r)]/3006,0040[\(c)]/3006,0050"))
                var points: [SIMD2<Double>] = []
                var slice = Set<Int>()
                for p in stride(from: 0, to: values.count, by: 3) {
                    let v = toVoxel(SIMD3(values[p], values[p + 1], values[p + 2]))
                    points.append(SIMD2(v.x, v.y))
                    slice.insert(Int(v.z.rounded()))
                    #expect(abs(v.z - v.z.rounded()) < 1e-3, "contour point off its slice plane")
                }
                #expect(slice.count == 1)
                perSlice[slice.first!, default: []].append(Polygon(points: points))
            }
            for (k, polygons) in perSlice {
                let mask = MarchingSquares.rasterize(polygons, rows: grid.shape.y, columns: grid.shape.x)
                for i in 0..<mask.count where mask[i] { labels.voxels[k * grid.shape.y * grid.shape.x + i] = label }
            }
        }
        return labels
    }

    static func dice(_ a: [Bool], _ b: [Bool]) -> Double {
        let both = zip(a, b).filter { $0 && $1 }.count
        let total = a.filter { $0 }.count + b.filter { $0 }.count
        return total == 0 ? 1 : 2 * Double(both) / Double(total)
    }

    @Test(arguments: ["dicom-zoo/mr-hippocrop/study1", "dicom-zoo/seg-dcmqi-liver/ct-3slice", "dicom-zoo/mr-multiseries-study3"])
    func rtstructIsValidAndRoundTrips(_ folder: String) throws {
        let fixture = try ExportFixture(folder)
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("rt")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("rtstruct.dcm")
        // Exact contours (no island/hole cleanup): the label map comes back voxel for voxel.
        let result = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                              algorithm: ExportFixture.algorithm, options: Self.exact, to: url)
        let absent = ExportFixture.structures.map(\.label).filter { !labels.voxels.contains(UInt16($0)) }
        #expect(result.emptyROIs == absent)
        let (_, report) = try runTool("/usr/bin/dciodvfy", ["-new", url.path])
        let errors = report.split(separator: "\n").filter { $0.hasPrefix("Error") }
        #expect(errors.isEmpty, "dciodvfy: \(errors.joined(separator: "\n"))")
        let (status, dump) = try runTool("/usr/bin/dcmdump", [url.path])
        #expect(status == 0 && dump.contains("CLOSED_PLANAR"))
        // Our importer + even-odd rasterisation gives the labels back exactly.
        let back = try Self.readBack(url, grid: fixture.loaded.volume, structures: ExportFixture.structures)
        #expect(back.voxels == labels.voxels)
    }

    /// plastimatch (independent) rasterises the RTSTRUCT onto the CT grid: Dice per structure.
    @Test func plastimatchRasterisesTheStructures() throws {
        let folder = "dicom-zoo/mr-hippocrop/study1"
        let fixture = try ExportFixture(folder)
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("rt-pm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("rtstruct.dcm")
        _ = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                     algorithm: ExportFixture.algorithm, options: Self.exact, to: url)
        let out = dir.appendingPathComponent("masks")
        let (status, log) = try runTool("/usr/bin/plastimatch", ["convert", "--input", url.path, "--referenced-ct", SharedData.dataFile(folder).path,
                                                                 "--output-prefix", out.path, "--prefix-format", "nii.gz", "--xor-contours"])
        #expect(status == 0, "plastimatch: \(log)")
        for s in ExportFixture.structures {
            let mask = try NIfTIImage(contentsOf: out.appendingPathComponent("\(s.name).nii.gz"))
            let volume = mask.floatVolume()
            #expect(volume.shape == labels.shape)
            #expect(volume.geometry.maxAbsDifference(labels.geometry) < 1e-3)
            let d = Self.dice(volume.voxels.map { $0 > 0 }, labels.voxels.map { $0 == UInt8(s.label) })
            let cubicCentimetres = Double(labels.voxels.filter { $0 == UInt8(s.label) }.count) * labels.geometry.spacing.x
                * labels.geometry.spacing.y * labels.geometry.spacing.z / 1000
            print("plastimatch Dice \(s.name): \(d) (\(String(format: "%.2f", cubicCentimetres)) cm³)")
            #expect(d >= (cubicCentimetres < 1 ? 0.90 : 0.95))
        }
    }
}

/// Issue #24: a point budget per ROI and per file — a named warning, or with strict a named refusal that
/// writes nothing.
struct PointBudgetTests {
    @Test func overBudgetWarnsOrRefuses() throws {
        let fixture = try ExportFixture("dicom-zoo/mr-hippocrop/study1")
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("rt-budget")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("rt.dcm")
        let within = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                              algorithm: ExportFixture.algorithm, options: RTStructWriterTests.exact, to: url)
        #expect(within.warnings.isEmpty)
        let most = try #require(within.points.values.max()), total = within.points.values.reduce(0, +)
        var tight = RTStructWriterTests.exact
        tight.pointBudgetPerROI = most - 1
        tight.pointBudgetPerFile = total - 1
        let over = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                            algorithm: ExportFixture.algorithm, options: tight, to: url)
        #expect(over.warnings.count == 2 && over.warnings.allSatisfy { $0.hasPrefix("RTSTRUCT_POINT_BUDGET: ") }, "\(over.warnings)")
        try FileManager.default.removeItem(at: url)
        tight.strictPointBudget = true
        let error = #expect(throws: DICOMExportError.self) {
            try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                     algorithm: ExportFixture.algorithm, options: tight, to: url)
        }
        #expect(error?.code == .pointBudgetExceeded && error?.detail.contains("budget \(most - 1) per ROI") == true)
        #expect(!FileManager.default.fileExists(atPath: url.path))
    }
}

/// Issue #24: an RTSTRUCT a planning system can import — on TotalSegmentator's labels for its example CT made
/// noisy (2 % of the voxels set to a random present label, seeded), islands left out and pinholes filled make
/// the file at least 10× smaller than the exact contours, while every ROI above 1 cm³ rasterised back keeps
/// Dice ≥ 0.95 against the clean label map (and the SEG stays exact — not touched here).
struct NoisyLabelContourTests {
    @Test func noisyLabelsGiveASmallStructureSetThatKeepsTheStructures() throws {
        let seed: UInt64 = 24
        let fixture = try ExportFixture("totalseg-example/example_ct_dicom", repairMissingUIDs: true)
        let image = try NIfTIImage(contentsOf: SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz")).labelVolume()
        let clean = try #require(image.reindexed(onto: fixture.loaded.volume.geometry, shape: fixture.loaded.volume.shape))
        var noisy = clean
        let present = Array(Set(clean.voxels).subtracting([0])).sorted()
        var random = SplitMix(state: seed)
        for i in noisy.voxels.indices where Double(random.next() >> 11) / Double(1 << 53) < 0.02 { noisy.voxels[i] = present[Int(random.next() % UInt64(present.count))] }
        let structures = present.map { StructureDescription(label: Int($0), name: "L\($0)") }
        let dir = try SharedData.temporaryDirectory("rt-noisy")
        defer { try? FileManager.default.removeItem(at: dir) }
        let exactURL = dir.appendingPathComponent("exact.dcm"), cleanedURL = dir.appendingPathComponent("cleaned.dcm")
        let exact = try RTStructWriter.write(labels: noisy, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                             options: RTStructWriterTests.exact, to: exactURL)
        let cleaned = try RTStructWriter.write(labels: noisy, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                               to: cleanedURL)
        let exactBytes = try #require(try FileManager.default.attributesOfItem(atPath: exactURL.path)[.size] as? Int)
        let cleanedBytes = try #require(try FileManager.default.attributesOfItem(atPath: cleanedURL.path)[.size] as? Int)
        let ratio = Double(exactBytes) / Double(cleanedBytes)
        print("noisy labels (seed \(seed)): exact \(exactBytes) bytes, \(exact.points.values.reduce(0, +)) points; cleaned \(cleanedBytes) bytes, "
              + "\(cleaned.points.values.reduce(0, +)) points (\(String(format: "%.1f", ratio))× smaller)")
        #expect(ratio >= 10, "seed \(seed): only \(ratio)× smaller")
        #expect(cleaned.cleanup.values.reduce(0) { $0 + $1.islandsRemoved } > 1000)
        // Rasterised back: Dice per ROI against the clean map (and, printed, against the noisy one).
        let back = try RTStructWriterTests.readBack(cleanedURL, grid: fixture.loaded.volume, structures: structures)
        let voxelCM3 = fixture.series.pixelSpacing.x * fixture.series.pixelSpacing.y * fixture.series.spacingAlongNormal / 1000
        var worst = 1.0
        for s in structures {
            let value = UInt16(s.label)
            let truth = clean.voxels.map { $0 == value }
            let size = Double(truth.filter { $0 }.count) * voxelCM3
            guard size > 1 else { continue }
            let dice = RTStructWriterTests.dice(back.voxels.map { $0 == value }, truth)
            worst = min(worst, dice)
            #expect(dice >= 0.95, "seed \(seed): label \(s.label) (\(String(format: "%.1f", size)) cm³) Dice \(dice)")
        }
        print("noisy labels: worst Dice over ROIs above 1 cm³ \(worst)")
    }
}

/// Issue #17: smooth contours — sub-voxel vertices, fewer points than the exact voxel boundary, and rasterised back
/// every ROI above 1 cm³ keeps Dice ≥ 0.97 against the label map (TotalSegmentator's 31 structures on its CT).
struct SmoothContourTests {
    @Test func smoothContoursAreCloseToTheLabelsWithFewerPoints() throws {
        let fixture = try ExportFixture("totalseg-example/example_ct_dicom", repairMissingUIDs: true)
        let image = try NIfTIImage(contentsOf: SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz")).labelVolume()
        let labels = try #require(image.reindexed(onto: fixture.loaded.volume.geometry, shape: fixture.loaded.volume.shape))
        let structures = Set(labels.voxels).subtracting([0]).sorted().map { StructureDescription(label: Int($0), name: "L\($0)") }
        let dir = try SharedData.temporaryDirectory("rt-smooth")
        defer { try? FileManager.default.removeItem(at: dir) }
        var smoothOptions = RTStructWriterTests.exact
        smoothOptions.contours = .smooth
        let exactURL = dir.appendingPathComponent("exact.dcm"), smoothURL = dir.appendingPathComponent("smooth.dcm")
        let exact = try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                             options: RTStructWriterTests.exact, to: exactURL)
        let smooth = try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                              options: smoothOptions, to: smoothURL)
        let exactPoints = exact.points.values.reduce(0, +), smoothPoints = smooth.points.values.reduce(0, +)
        #expect(smoothPoints < exactPoints, "smooth \(smoothPoints) points, exact \(exactPoints)")
        let back = try RTStructWriterTests.readBack(smoothURL, grid: fixture.loaded.volume, structures: structures)
        let voxelCM3 = fixture.series.pixelSpacing.x * fixture.series.pixelSpacing.y * fixture.series.spacingAlongNormal / 1000
        var worst = 1.0
        for s in structures {
            let value = UInt16(s.label)
            let truth = labels.voxels.map { $0 == value }
            guard Double(truth.filter { $0 }.count) * voxelCM3 > 1 else { continue }
            let dice = RTStructWriterTests.dice(back.voxels.map { $0 == value }, truth)
            worst = min(worst, dice)
            #expect(dice >= 0.97, "label \(s.label): Dice \(dice)")
        }
        // Vertices lie off the half-voxel grid (sub-voxel), not on it as the exact contours do.
        let file = try DICOMFile(path: smoothURL.path)
        let values = try #require(file.doubles(atPath: "3006,0039[0]/3006,0040[0]/3006,0050"))
        #expect(values.count >= 9)
        print("smooth contours: \(smoothPoints) points vs exact \(exactPoints) (\(String(format: "%.1f", Double(exactPoints) / Double(smoothPoints)))× fewer); worst Dice above 1 cm³ \(worst)")
    }
}

/// Issue #17: `holes: keyhole` — the ring of the synthetic labels is one contour per slice (for union-only
/// importers), and read back it is still the ring.
struct KeyholeStructureSetTests {
    @Test func keyholeGivesOneContourPerRingSlice() throws {
        let fixture = try ExportFixture("dicom-zoo/mr-hippocrop/study1")
        let labels = fixture.syntheticLabels()
        let dir = try SharedData.temporaryDirectory("rt-keyhole")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = RTStructWriterTests.exact
        options.holes = .keyhole
        let url = dir.appendingPathComponent("rt.dcm")
        let keyholed = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                                algorithm: ExportFixture.algorithm, options: options, to: url)
        let separate = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                                algorithm: ExportFixture.algorithm, options: RTStructWriterTests.exact, to: dir.appendingPathComponent("s.dcm"))
        let ringSlices = Set((0..<labels.shape.z).filter { z in (0..<(labels.shape.y * labels.shape.x)).contains { labels.voxels[z * labels.shape.y * labels.shape.x + $0] == 1 } })
        #expect(keyholed.contours[1] == ringSlices.count && (separate.contours[1] ?? 0) == 2 * ringSlices.count)
        let back = try RTStructWriterTests.readBack(url, grid: fixture.loaded.volume, structures: ExportFixture.structures)
        let dice = RTStructWriterTests.dice(back.voxels.map { $0 == 1 }, labels.voxels.map { $0 == 1 })
        #expect(dice >= 0.97, "ring Dice \(dice)")
    }
}

/// Issue #17: smoothing never loses what it cannot draw — single voxels and a one-pixel-wide line keep (exact)
/// contours on their slices, so every structure read back is there.
struct SmoothContourFallbackTests {
    @Test func specksAndThinLinesSurviveSmoothing() throws {
        let fixture = try ExportFixture("dicom-zoo/mr-hippocrop/study1")
        let shape = fixture.loaded.volume.shape
        var labels = LabelVolume(shape: shape, geometry: fixture.loaded.volume.geometry, repeating: 0)
        let z = shape.z / 2
        labels[z, 3, 3] = 1                                       // one voxel
        for x in 2..<(shape.x - 2) { labels[z + 1, shape.y / 2, x] = 2 }   // a one-pixel line
        for y in 5..<15 { for x in 5..<15 { labels[z, y, x] = 3 } }       // a square: smoothed
        let structures = [StructureDescription(label: 1, name: "Speck"), StructureDescription(label: 2, name: "Line"),
                          StructureDescription(label: 3, name: "Square")]
        var options = RTStructWriterTests.exact
        options.contours = .smooth
        let dir = try SharedData.temporaryDirectory("rt-smooth-fallback")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("rt.dcm")
        let result = try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                              options: options, to: url)
        #expect(result.emptyROIs.isEmpty)
        let back = try RTStructWriterTests.readBack(url, grid: fixture.loaded.volume, structures: structures)
        for s in structures {
            let value = UInt16(s.label)
            let dice = RTStructWriterTests.dice(back.voxels.map { $0 == value }, labels.voxels.map { $0 == value })
            #expect(dice >= 0.95, "\(s.name): Dice \(dice)")
        }
    }
}

/// Issue #17: smooth contours from the model's confidence — on a disc whose true edge lies between voxel centres
/// (a logit margin that crosses zero on a circle of radius 7.3), the contours follow that circle more closely
/// than the blurred mask does; the RTSTRUCT says what they were drawn from, and still reads back as the mask.
struct ConfidenceContourTests {
    @Test func contoursFollowTheModelsMargin() throws {
        let fixture = try ExportFixture("dicom-zoo/mr-hippocrop/study1")
        let shape = fixture.loaded.volume.shape
        let centre = SIMD2(Double(shape.x) / 2 + 0.37, Double(shape.y) / 2 - 0.21), radius = 7.3
        var labels = LabelVolume(shape: shape, geometry: fixture.loaded.volume.geometry, repeating: 0)
        var confidence = [Float16](repeating: CasePredictionMargin.outside, count: shape.count)
        let slices = (shape.z / 2 - 2)...(shape.z / 2 + 2)
        for z in slices { for y in 0..<shape.y { for x in 0..<shape.x {
            let d = SIMD2(Double(x), Double(y)) - centre
            let margin = 1.5 * (radius - (d * d).sum().squareRoot())   // logits: 1.5 per pixel across the edge
            if margin > 0 { labels[z, y, x] = 1 }
            confidence[(z * shape.y + y) * shape.x + x] = Float16(min(abs(margin), 64))
        } } }
        let structures = [StructureDescription(label: 1, name: "Disc")]
        var options = RTStructWriterTests.exact
        options.contours = .smooth
        let dir = try SharedData.temporaryDirectory("rt-confidence")
        defer { try? FileManager.default.removeItem(at: dir) }
        func meanRadialError(_ url: URL) throws -> Double {
            let read = try StructureSetReader.contours(url, onto: fixture.loaded.volume.geometry, shape: shape)
            var sum = 0.0, n = 0
            for polygons in (read.polygons[0] ?? [:]).values { for polygon in polygons { for p in polygon.points {
                let d = p - centre
                sum += abs((d * d).sum().squareRoot() - radius)
                n += 1
            } } }
            return sum / Double(max(n, 1))
        }
        let fromMask = dir.appendingPathComponent("mask.dcm"), fromModel = dir.appendingPathComponent("model.dcm")
        let maskResult = try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                                  options: options, to: fromMask)
        let modelResult = try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                                   options: options, confidence: confidence, to: fromModel)
        #expect(maskResult.contourSource == .smoothedMask && modelResult.contourSource == .modelConfidence)
        let maskError = try meanRadialError(fromMask), modelError = try meanRadialError(fromModel)
        #expect(modelError < 0.15, "mean distance of the vertices from the model's edge \(modelError) px")
        #expect(modelError < maskError * 0.8, "model's margin \(modelError) px vs blurred mask \(maskError) px")
        let back = try RTStructWriterTests.readBack(fromModel, grid: fixture.loaded.volume, structures: structures)
        let dice = RTStructWriterTests.dice(back.voxels.map { $0 == 1 }, labels.voxels.map { $0 == 1 })
        #expect(dice >= 0.97, "Dice \(dice)")
        // A confidence map of another size is refused, naming both sizes.
        #expect(throws: DICOMExportError.self) {
            try RTStructWriter.write(labels: labels, series: fixture.series, structures: structures, algorithm: ExportFixture.algorithm,
                                     options: options, confidence: [1, 2, 3], to: dir.appendingPathComponent("bad.dcm"))
        }
        print("confidence contours: mean vertex distance from the model's edge \(String(format: "%.3f", modelError)) px "
              + "(blurred mask \(String(format: "%.3f", maskError)) px), Dice \(String(format: "%.4f", dice))")
    }
}

/// The value the exporter gives voxels outside its crop box (kept here: DICOMExport does not import Inference).
enum CasePredictionMargin {
    static let outside: Float16 = 64
}
