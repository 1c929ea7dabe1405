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
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let browser = try #require(chromium, "chromium is installed by Ops/setup.sh --test")
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
        let run = try CommandRunner.run(browser, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(dir.path)/profile",
                                                  "--window-size=1400,1800", "--screenshot=\(shot.path)", page.absoluteString])
        #expect(FileManager.default.fileExists(atPath: shot.path), "chromium: \(run.stderr.suffix(1000))")
        // Not blank: the screenshot decoded (zlib, PNG row filters undone) has many distinct colours (a sample of pixels).
        let script = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read(); pos = 8; idat = b''; width = height = 0; channels = 4
        while pos < len(data):
            n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
            if kind == b'IHDR': width, height, depth, ctype = struct.unpack('>IIBB', body[:10]); channels = {2: 3, 6: 4}[ctype]
            if kind == b'IDAT': idat += body
        raw = zlib.decompress(idat); stride = width * channels; rows = []; prev = bytearray(stride)
        for y in range(height):
            f = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0; b = prev[i]; c = prev[i - channels] if i >= channels else 0
                if f == 1: line[i] = (line[i] + a) & 255
                elif f == 2: line[i] = (line[i] + b) & 255
                elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif f == 4:
                    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(bytes(line)); prev = line
        colours = {row[i:i + 3] for row in rows[::8] for i in range(0, stride, channels * 8)}
        print(len(colours))
        """
        let decoded = try CommandRunner.run("/usr/bin/python3", ["-c", script, shot.path])
        let distinct = Int(decoded.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(distinct > 50, "the screenshot has \(distinct) distinct colours: \(decoded.stderr.suffix(500))")
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
}
