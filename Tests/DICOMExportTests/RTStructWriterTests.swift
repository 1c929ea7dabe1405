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
        let result = try RTStructWriter.write(labels: labels, series: fixture.series, structures: ExportFixture.structures,
                                              algorithm: ExportFixture.algorithm, to: url)
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
                                     algorithm: ExportFixture.algorithm, to: url)
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
