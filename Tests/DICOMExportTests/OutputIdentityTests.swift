import DICOMExport
import Foundation
import Testing
import TestSupport
import VolumeGeometry

/// Issue #17: names, codes and colours; name-based UIDs; the attributes outputs describe their source with.
struct StructureCatalogTests {
    /// TotalSegmentator's 117 "total" classes as its example labels name them.
    static let totalSegmentatorNames: [String] = {
        let url = SharedData.dataFile("totalseg-example/example_seg_labels.json")
        guard let data = try? Data(contentsOf: url), let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let labels = object["labels"] as? [String: String] else { return [] }
        return labels.sorted { Int($0.key)! < Int($1.key)! }.map(\.value)
    }()

    @Test func everyTotalSegmentatorClassIsKnownWithAUniqueShortName() throws {
        let names = Self.totalSegmentatorNames
        try #require(names.count == 117, "shared/data/totalseg-example/example_seg_labels.json")
        let entries = names.map { StructureCatalog.entry(for: $0) }
        let unknown = zip(names, entries).filter { $0.1 == nil }.map(\.0)
        #expect(unknown.isEmpty, "not in the catalog: \(unknown)")
        let roiNames = entries.compactMap { $0?.name }
        #expect(Set(roiNames.map { $0.lowercased() }).count == roiNames.count, "ROI names must be unique")
        #expect(roiNames.allSatisfy { $0.count <= 16 }, "TG-263 names fit 16 characters: \(roiNames.filter { $0.count > 16 })")
        // Codes are SNOMED CT, laterality as a modifier; kidney_left is the Kidney with Left.
        let kidney = try #require(StructureCatalog.entry(for: "kidney_left"))
        #expect(kidney.name == "Kidney_L" && kidney.type.value == "64033007" && kidney.type.scheme == "SCT" && kidney.modifier?.value == "7771000")
        #expect(StructureCatalog.entry(for: "Kidney_L") == kidney && StructureCatalog.entry(for: "left kidney") == kidney && StructureCatalog.entry(for: "kidney, upper pole") == nil)
        #expect(StructureCatalog.entry(for: "rib_right_9")?.name == "Rib09_R")
        #expect(StructureCatalog.entry(for: "vertebrae_T12")?.interpretedType == "ORGAN")
        #expect(StructureCatalog.entry(for: "kidney_cyst_left")?.interpretedType == "CAVITY")
        #expect(StructureCatalog.entry(for: "body")?.interpretedType == "EXTERNAL")
        #expect(StructureCatalog.describe(label: 7, name: "tumour core").name == "tumour core")
    }

    @Test func allStructuresOfAModelGetDistinctColours() {
        let described = Self.totalSegmentatorNames.enumerated().map { StructureCatalog.describe(label: $0.offset + 1, name: $0.element) }
        let colored = StructureCatalog.distinctColors(described)
        #expect(Set(colored.map { [$0.color.x, $0.color.y, $0.color.z] }).count == 117)
        // Unknown names: the palette (distinct by construction); a pinned (site) colour is kept even if shared.
        let unknown = (1...40).map { StructureDescription(label: $0, name: "L\($0)") }
        #expect(Set(StructureCatalog.distinctColors(unknown).map { [$0.color.x, $0.color.y, $0.color.z] }).count == 40)
        var pinned = [StructureDescription(label: 1, name: "A", color: SIMD3(10, 20, 30)), StructureDescription(label: 2, name: "B", color: SIMD3(10, 20, 30))]
        pinned = StructureCatalog.distinctColors(pinned, pinned: [1, 2])
        #expect(pinned[0].color == SIMD3(10, 20, 30) && pinned[1].color == SIMD3(10, 20, 30))
        let palette = StructureCatalog.palette
        #expect(Set(palette.map { [$0.x, $0.y, $0.z] }).count == palette.count)
    }
}

struct OutputUIDTests {
    @Test func nameBasedUIDsRepeatAndDifferByKindSeedAndRoot() {
        let a = OutputUIDs(seed: "1.2.3|model x|profile y")
        #expect(a.make("seg-series") == a.make("seg-series"))
        #expect(a.make("seg-series") != a.make("seg-sop"))
        #expect(a.make("seg-series") != OutputUIDs(seed: "1.2.3|model z|profile y").make("seg-series"))
        #expect(a.make("seg-series").hasPrefix("2.25."))
        #expect(OutputUIDs.fresh.make("seg-series") != OutputUIDs.fresh.make("seg-series"))
        let rooted = OutputUIDs(seed: "s", root: "1.2.826.0.1.3680043.10.1234")
        let uid = rooted.make("rtstruct-sop")
        #expect(uid.hasPrefix("1.2.826.0.1.3680043.10.1234.") && uid.count <= 64)
        let last = uid.split(separator: ".").last!
        #expect(!last.hasPrefix("0") && last.allSatisfy(\.isNumber))
        for valid in ["1.2.3", "2.25", "1.0.5"] { #expect(OutputUIDs.problem(withRoot: valid) == nil) }
        for invalid in ["", "1..2", "1.02", "1.2.a", ".1", String(repeating: "1.", count: 21) + "1"] {
            #expect(OutputUIDs.problem(withRoot: invalid) != nil, "\(invalid)")
        }
        // Every UID component of a 2.25 UID is a decimal without leading zero, at most 64 characters.
        for seed in 0..<200 {
            let u = OutputUIDs(seed: "seed \(seed)").make("k")
            #expect(u.count <= 64 && u.split(separator: ".").allSatisfy { $0 == "0" || !$0.hasPrefix("0") }, "\(u)")
        }
    }
}

struct SourceDescriptionTests {
    /// A gantry-tilted series as the GE CT in the zoo: positions 4.22 mm apart along z, the slice normal
    /// tilted by 18.5°; DICOM's SpacingBetweenSlices is along the normal (4.002 mm).
    @Test func spacingBetweenSlicesIsAlongTheNormalAndMissingReferencesAreNamed() {
        let tilt = 18.5 * Double.pi / 180
        let row = SIMD3<Double>(1, 0, 0), column = SIMD3<Double>(0, cos(tilt), -sin(tilt))
        let slices = (0..<4).map { k in
            ReferencedSeries.Slice(sopClassUID: k == 3 ? "" : "1.2.840.10008.5.1.4.1.1.2", sopInstanceUID: k == 0 ? "" : "1.2.3.\(k)",
                                   path: "/dev/null", position: SIMD3(0, 0, 4.22 * Double(k)))
        }
        let series = ReferencedSeries(studyInstanceUID: "", seriesInstanceUID: "1.2.3", frameOfReferenceUID: "1.2.4", modality: "CT",
                                      rows: 4, columns: 4, pixelSpacing: SIMD2(0.5, 0.5), rowDirection: row, columnDirection: column,
                                      sliceThickness: 4, slices: slices, geometry: VolumeGeometry(spacing: SIMD3(0.5, 0.5, 4.22)), isLossy: false)
        #expect(abs(series.spacingAlongNormal - 4.22 * cos(tilt)) < 1e-9)
        #expect(abs(series.spacingAlongNormal - 4.002) < 1e-3)
        #expect(series.missingReferences == ["StudyInstanceUID (0020,000D)", "SOPInstanceUID (0008,0018) in 1 of 4 instances",
                                             "SOPClassUID (0008,0016) in 1 of 4 instances"])
        let error = #expect(throws: DICOMExportError.self) { try series.validateForOutput("out") }
        #expect(error?.code == .missingUIDs && error?.detail.contains("SOPClassUID (0008,0016) in 1 of 4") == true)
    }
}
