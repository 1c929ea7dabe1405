import CaseLayer
import DICOMExport
import DICOMImport
import Foundation
import NIfTI
import QASnapshot
import Testing
import TestSupport
import VolumeGeometry

/// Issues #17 and #24: a QA sheet a person can read, and a report a browser shows.
struct QASheetTests {
    /// TotalSegmentator's 31 structures on its example CT (512×512×20).
    static func totalSegmentatorCase() throws -> (image: ImageVolume, labels: LabelVolume, structures: [StructureDescription]) {
        let stack = try #require(try DICOMScanner().scan(SharedData.dataFile("totalseg-example/example_ct_dicom")).stacks.first)
        let image = try DICOMSeriesLoader().load(stack).volume
        let map = try NIfTIImage(contentsOf: SharedData.dataFile("totalseg-example/example_seg_dicom.nii.gz")).labelVolume()
        let labels = try #require(map.reindexed(onto: image.geometry, shape: image.shape))
        let names = try #require((try SharedData.json(SharedData.dataFile("totalseg-example/example_seg_labels.json")) as? [String: Any])?["labels"] as? [String: String])
        let present = Set(labels.voxels).subtracting([0]).sorted()
        let structures = StructureCatalog.distinctColors(present.map { StructureCatalog.describe(label: Int($0), name: names[String($0)] ?? "L\($0)") })
        return (image, labels, structures)
    }

    @Test func thirtyOneStructuresFitOnAReadableSheet() throws {
        let (image, labels, structures) = try Self.totalSegmentatorCase()
        #expect(structures.count == 31)
        let volumes = CaseReport.volumes(labels, structures: structures)
        let pages = QASnapshot.sheet(image: image, labels: labels, structures: structures.map {
            QASnapshot.Structure(label: UInt16($0.label), color: $0.color, name: $0.name, cubicCentimetres: volumes[$0.label] ?? 0)
        }, context: QASnapshot.Context(caseID: "case-test", model: "Dataset291 3d_fullres", precision: "fp32", software: "nnseg test"))
        #expect(!pages.isEmpty && pages.count <= 2, "\(pages.count) pages")
        for page in pages {
            #expect(page.width <= QASnapshot.maximumSide && page.height <= QASnapshot.maximumSide, "page \(page.width)×\(page.height)")
            #expect(page.pixels[page.width * 4 + 4] == SIMD3(160, 20, 20), "the banner")
            // Every structure's colour is on every page (its legend swatch), and text (white) is drawn.
            let colours = Set(page.pixels.map { [$0.x, $0.y, $0.z] })
            for s in structures { #expect(colours.contains([s.color.x, s.color.y, s.color.z]), "\(s.name) not on the page") }
            #expect(colours.contains([235, 235, 235]) && colours.contains([255, 220, 0]), "legend text and orientation letters")
        }
        print("QA sheet: \(pages.count) page(s), first \(pages[0].width)×\(pages[0].height)")
    }

    /// The report opens in a browser: headless Chromium renders it to a PNG that is not blank.
    @Test func reportRendersInChromium() throws {
        _ = try #require(Chromium.executable, "chromium is installed by Ops/setup.sh --test")
        let (image, labels, structures) = try Self.totalSegmentatorCase()
        let volumes = CaseReport.volumes(labels, structures: structures)
        let pages = QASnapshot.sheet(image: image, labels: labels, structures: structures.map {
            QASnapshot.Structure(label: UInt16($0.label), color: $0.color, name: $0.name, cubicCentimetres: volumes[$0.label] ?? 0)
        }, context: QASnapshot.Context(caseID: "case-test", model: "m", precision: "fp32", software: "nnseg test"))
        let html = CaseReport.html(context: ReportContext(caseID: "case-test", model: "m"), structures: structures, volumes: volumes,
                                   verification: nil, rtstruct: nil, pages: pages.map(QASnapshot.png))
        #expect(html.contains("not approved") && html.contains("Rib10_L") && html.contains("data:image/png;base64,"))
        let dir = try SharedData.temporaryDirectory("report")
        defer { try? FileManager.default.removeItem(at: dir) }
        let page = dir.appendingPathComponent("report.html"), shot = dir.appendingPathComponent("report.png")
        try html.write(to: page, atomically: true, encoding: .utf8)
        let run = try Chromium.screenshot(page.absoluteString, to: shot, profile: dir.appendingPathComponent("profile"))
        #expect(FileManager.default.fileExists(atPath: shot.path), "chromium: \(run.stderr.suffix(1000))")
        // Not blank: many distinct colours in a sample of pixels.
        let distinct = try Chromium.distinctColours(shot)
        #expect(distinct > 50, "the screenshot has \(distinct) distinct colours")
    }
}

struct QASheetDrawingTests {
    /// Text and rectangles beyond any edge are clipped, never out of bounds (a long banner on a narrow page).
    @Test func drawingIsClippedAtEveryEdge() {
        let structures = [QASnapshot.Structure(label: 1, color: SIMD3(255, 0, 0), name: String(repeating: "W", count: 300), cubicCentimetres: 1)]
        var image = ImageVolume(shape: VolumeShape(z: 1, y: 3, x: 3), geometry: VolumeGeometry(), repeating: 0)
        image.voxels[4] = 1
        var labels = LabelVolume(shape: VolumeShape(z: 1, y: 3, x: 3), geometry: VolumeGeometry(), repeating: 0)
        labels.voxels[4] = 1
        let pages = QASnapshot.sheet(image: image, labels: labels, structures: structures,
                                     context: QASnapshot.Context(caseID: String(repeating: "C", count: 400), model: "m", precision: "fp32", software: "s"))
        #expect(pages.count == 1 && pages[0].width <= QASnapshot.maximumSide)
    }

    /// Legend entries never overlap, however few tiles the page has: a Hippocampus case (small tiles, one slice shows
    /// both structures) with the demo profile's names drew the second entry over the first one's volume — the legend
    /// was laid out for the widest page, not the one-tile page it was on.
    @Test func legendEntriesDoNotOverlap() throws {
        let folder = SharedData.dataFile("Dataset004_Hippocampus")
        let image = try NIfTIImage(contentsOf: folder.appendingPathComponent("imagesTr/hippocampus_001_0000.nii.gz")).floatVolume()
        let labels = try NIfTIImage(contentsOf: folder.appendingPathComponent("labelsTr/hippocampus_001.nii.gz")).labelVolume()
        let described = [StructureCatalog.describe(label: 1, name: "Hippocampus_Anterior"), StructureCatalog.describe(label: 2, name: "Hippocampus_Posterior")]
        let volumes = CaseReport.volumes(labels, structures: described)
        let structures = StructureCatalog.distinctColors(described).map {
            QASnapshot.Structure(label: UInt16($0.label), color: $0.color, name: $0.name, cubicCentimetres: volumes[$0.label] ?? 0)
        }
        let pages = QASnapshot.sheet(image: image, labels: labels, structures: structures,
                                     context: QASnapshot.Context(caseID: "case-test", model: "m", precision: "fp32", software: "s"))
        #expect(!pages.isEmpty)
        for page in pages {
            // Swatches: 14×14 squares of a structure's colour below the tiles; the entry's text is 12 px a character.
            var swatches: [(x: Int, y: Int, text: Int)] = []
            for s in structures {
                let text = "\(s.name.prefix(22))  \(String(format: "%.1f", s.cubicCentimetres)) CM³".count
                for y in stride(from: page.height - 1, to: 13, by: -1) {
                    let found = (0..<(page.width - 14)).first { x in (0..<14).allSatisfy { page.pixels[y * page.width + x + $0] == s.color } }
                    if let x = found, page.pixels[(y - 13) * page.width + x] == s.color { swatches.append((x, y, text)); break }
                }
            }
            #expect(swatches.count == structures.count, "every legend swatch found")
            for a in swatches {
                for b in swatches where b.y == a.y && b.x > a.x {
                    #expect(b.x - a.x >= 20 + a.text * 12, "entry at x \(a.x) (\(a.text) characters) runs into the one at x \(b.x)")
                }
            }
        }
    }
}
