import AuditLog
import DICOMExport
import DICOMImport
import Foundation
import NIfTI
import Testing
import TestSupport
@testable import BatchPipeline
import JSON
import ModelSharing
@testable import SiteProfile

struct CaseProfileTests {
    static func write(_ yaml: String) throws -> URL {
        let dir = try SharedData.temporaryDirectory("profile")
        let url = dir.appendingPathComponent("p.yaml")
        try Data(yaml.utf8).write(to: url)
        return url
    }

    static let model = SharedData.fixtures.appendingPathComponent("demo/model").path

    @Test func demoProfileLoads() throws {
        let p = try CaseProfile(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"))
        #expect(p.name == "hippocampus-demo")
        #expect(p.structures.map(\.name) == ["Hippocampus_Ant", "Hippocampus_Post"])
        #expect(p.selection.modality == "MR" && p.selection.orientation == "AXIAL" && p.selection.minimumSlices == 16)
        #expect(p.sha256.count == 64)
        #expect(p.readerLimits == .standard)
    }

    /// Issue #14: the reader's limits are profile settings.
    @Test func readerLimitsAreSettings() throws {
        let url = try Self.write("name: x\nmodel: {folder: \(Self.model)}\ngeometry: {maximumFrames: 4096, maximumSeriesVoxels: 1000000}\n"
                                 + "structures: [{label: 1, name: A}]\n")
        #expect(try CaseProfile(contentsOf: url).readerLimits == ReaderLimits(maximumFrames: 4096, maximumSeriesVoxels: 1_000_000))
    }

    @Test(arguments: [
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A}]\ncolour: red\n", "colour"),
        ("name: x\nstructures: [{label: 1, name: A}]\n", "model.folder"),
        ("name: x\nmodel: {folder: /nonexistent}\nstructures: [{label: 1, name: A}]\n", "model.folder"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A, color: [300, 0, 0]}]\n", "structures[0].color"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A, interpretedType: BRAIN}]\n", "structures[0].interpretedType"),
        ("name: x\nmodel: {folder: MODEL}\nselection: {seriesDescription: '([a-'}\nstructures: [{label: 1, name: A}]\n", "selection.seriesDescription"),
        ("name: x\nmodel: {folder: MODEL}\ninference: {stepSize: 2}\nstructures: [{label: 1, name: A}]\n", "inference.stepSize"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A}, {label: 1, name: B}]\n", "structures"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 9, name: A}]\n", "structures[0].label"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A}, {label: 2, name: a}]\n", "structures"),
        ("name: x\nmodel: {folder: MODEL}\noutputs: {uidRoot: '1.02.3'}\n", "outputs.uidRoot"),
        ("name: x\nmodel: {folder: MODEL}\noutputs: {fillHolesMM3: -1}\n", "outputs.fillHolesMM3"),
        ("name: x\nmodel: {folder: MODEL}\noutputs: {contours: wobbly}\n", "outputs.contours"),
        ("name: x\nmodel: {folder: MODEL}\noutputs: {segEncoding: fractional}\n", "outputs.segEncoding"),
        ("name: x\nmodel: {folder: MODEL}\noutputs: {pointBudgetPerROI: 0}\n", "outputs.pointBudgetPerROI"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, minimumIslandMM3: -5}]\n", "structures[0].minimumIslandMM3"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A}]\npostprocessing: {keepLargestComponent: [3]}\n", "postprocessing.keepLargestComponent"),
        // Issue #13: typos and wrong types below the top level are refused with their path.
        ("name: x\nmodel: {folder: MODEL}\noutputs: {rtstuct: false}\nstructures: [{label: 1, name: A}]\n", "outputs.rtstuct"),
        ("name: x\nmodel: {folder: MODEL, fold: [0]}\nstructures: [{label: 1, name: A}]\n", "model.fold"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{label: 1, name: A, colr: [1, 2, 3]}]\n", "structures[0].colr"),
        ("name: x\nmodel: {folder: MODEL}\ninference: {mirroring: sometimes}\nstructures: [{label: 1, name: A}]\n", "inference.mirroring"),
        ("name: x\nmodel: {folder: MODEL}\nselection: {minimumSlices: many}\nstructures: [{label: 1, name: A}]\n", "selection.minimumSlices"),
        ("name: x\nmodel: {folder: MODEL}\nstructures: [{name: A}]\n", "structures[0].label"),
        ("name: x\nmodel: {folder: MODEL}\ngeometry: {maximumFrames: 0}\nstructures: [{label: 1, name: A}]\n", "geometry.maximumFrames"),
        ("name: x\nmodel: {folder: MODEL}\ngeometry: {maximumSeriesVoxels: -1}\nstructures: [{label: 1, name: A}]\n", "geometry.maximumSeriesVoxels"),
    ])
    func invalidProfilesNameTheKey(_ yaml: String, _ key: String) throws {
        let url = try Self.write(yaml.replacingOccurrences(of: "MODEL", with: Self.model))
        let error = #expect(throws: ProfileError.self) { try CaseProfile(contentsOf: url) }
        #expect(error?.key == key, "\(error?.description ?? "no error")")
        #expect(error?.file == url.path)
    }

    /// Issue #24: without `structures:` every model label is a structure named from dataset.json (catalog names,
    /// codes and colours where known); a profile entry overrides per label.
    @Test func structuresComeFromTheModelAndEntriesOverride() throws {
        let dir = try SharedData.temporaryDirectory("profile-model")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.model), to: model)
        var dataset = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("dataset.json"))) as? [String: Any])
        dataset["labels"] = ["background": 0, "liver": 1, "left hippocampus": 2]
        try JSONSerialization.data(withJSONObject: dataset).write(to: model.appendingPathComponent("dataset.json"))
        let plain = try CaseProfile(contentsOf: try Self.write("name: x\nmodel: {folder: \(model.path)}\n"))
        #expect(plain.structures.map(\.name) == ["Liver", "left hippocampus"])
        #expect(plain.structures[0].type.value == "10200004" && plain.structures[0].category.value == "123037004")
        #expect(plain.structures[1].type == .tissue && plain.structures[0].color != plain.structures[1].color)
        let edited = try CaseProfile(contentsOf: try Self.write(
            "name: x\nmodel: {folder: \(model.path)}\nstructures: [{label: 2, name: Hippocampus_L, color: [1, 2, 3]}]\n"))
        #expect(edited.structures.map(\.name) == ["Liver", "Hippocampus_L"] && edited.structures[1].color == SIMD3(1, 2, 3))
        #expect(edited.structures[0] == plain.structures[0])
        // `nnseg profile init`'s text loads and gives the same structures.
        let starter = dir.appendingPathComponent("starter.yaml")
        try CaseProfile.starterText(modelFolder: model, folderReference: "model").write(to: starter, atomically: true, encoding: .utf8)
        let loaded = try CaseProfile(contentsOf: starter)
        #expect(loaded.structures == plain.structures)
        #expect(loaded.selection.modality == nil && loaded.repairMissingUIDs == false)
    }

    /// Issue #21: a profile names an installed model bundle by ID and hash; the bundle is verified file by file at
    /// load, and a wrong hash, a missing signature or an edited file refuses the profile, naming the bundle's error.
    @Test func aProfileNamesAnInstalledBundleByIDAndHash() throws {
        let dir = try SharedData.temporaryDirectory("profile-bundle")
        defer { try? FileManager.default.removeItem(at: dir) }
        let zip = dir.appendingPathComponent("demo.zip"), models = dir.appendingPathComponent("models")
        try BundleExporter(modelFolders: [URL(fileURLWithPath: Self.model)]).write(to: zip, id: "hippo-demo")
        let installed = try BundleArchive(url: zip).install(into: models)
        let hash = installed.sha256
        let profile = try CaseProfile(contentsOf: try Self.write("name: x\nmodel: {bundle: hippo-demo, sha256: \(hash.prefix(16)), models: \(models.path)}\n"))
        #expect(profile.modelFolder.path == models.appendingPathComponent("Dataset004_Hippocampus/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres").path)
        #expect(profile.modelBundle == CaseProfile.ModelBundleReference(id: "hippo-demo", sha256: hash, signedBy: nil))
        #expect(profile.structures.count == 2)

        func refusal(_ model: String) throws -> ProfileError? {
            let url = try Self.write("name: x\nmodel: \(model)\n")
            return #expect(throws: ProfileError.self) { try CaseProfile(contentsOf: url) }
        }
        let wrongHash = try refusal("{bundle: hippo-demo, sha256: \(String(repeating: "ab", count: 8)), models: \(models.path)}")
        #expect(wrongHash?.key == "model.bundle" && wrongHash?.detail.hasPrefix("BUNDLE_NOT_FOUND") == true, "\(String(describing: wrongHash))")
        let noHash = try refusal("{bundle: hippo-demo, models: \(models.path)}")
        #expect(noHash?.key == "model.sha256")
        let both = try refusal("{bundle: hippo-demo, folder: \(Self.model), sha256: \(hash), models: \(models.path)}")
        #expect(both?.key == "model")
        let stray = try refusal("{folder: \(Self.model), sha256: \(hash)}")
        #expect(stray?.key == "model.sha256")
        let unsigned = try refusal("{bundle: hippo-demo, sha256: \(hash), models: \(models.path), publicKey: \(TestKeys.publicKeyPath)}")
        #expect(unsigned?.detail.hasPrefix("BUNDLE_UNSIGNED") == true, "\(String(describing: unsigned))")
        // One byte of the installed checkpoint changed: the profile no longer loads.
        let checkpoint = profile.modelFolder.appendingPathComponent("fold_0/checkpoint_final.pth")
        var bytes = [UInt8](try Data(contentsOf: checkpoint))
        bytes[bytes.count - 100] ^= 0x80
        try Data(bytes).write(to: checkpoint)
        let tampered = try refusal("{bundle: hippo-demo, sha256: \(hash), models: \(models.path)}")
        #expect(tampered?.detail.hasPrefix("BUNDLE_TAMPERED") == true && tampered?.detail.contains("checkpoint_final.pth") == true,
                "\(String(describing: tampered))")
    }

    @Test func aNestedTypoSuggestsTheKey() throws {
        let url = try Self.write("name: x\nmodel: {folder: \(Self.model)}\noutputs: {rtstuct: false}\nstructures: [{label: 1, name: A}]\n")
        let error = #expect(throws: ProfileError.self) { try CaseProfile(contentsOf: url) }
        #expect(error?.description.hasSuffix("outputs.rtstuct: unknown key (did you mean rtstruct?; known: contours, fillHolesMM3, holes, minimumIslandMM3, nifti, pointBudgetPerFile, pointBudgetPerROI, qaSnapshot, repairMissingUIDs, report, rtstruct, rtstructSeriesNumber, seg, segEncoding, segSeriesNumber, strict, uidRoot)") == true,
                "\(error?.description ?? "")")
    }
}

struct SeriesSelectionTests {
    @Test func rulesChooseAndExplain() throws {
        let scan = try DICOMScanner().scan(SharedData.dataFile("dicom-zoo/mr-multiseries-study3"))
        var rules = CaseProfile.Selection(modality: "MR", orientation: "AXIAL", minimumSlices: 30, sliceThickness: nil, seriesDescription: nil)
        let outcome = SeriesSelection.select(scan.stacks, rules: rules)
        #expect(outcome.chosen?.slices.count == 40)
        #expect(outcome.rejected.count == 1 && outcome.rejected[0].reason == "22 slice(s) < 30")
        // With no slice rule both match; ties go to more slices.
        rules.minimumSlices = 1
        let tie = SeriesSelection.select(scan.stacks, rules: rules)
        #expect(tie.chosen?.slices.count == 40)
        #expect(tie.rejected.first?.reason.contains("another series ranks first") == true)
        rules.seriesDescription = "^t2"
        #expect(SeriesSelection.select(scan.stacks, rules: rules).chosen?.seriesDescription == "T2_reg")
        rules.modality = "CT"
        let none = SeriesSelection.select(scan.stacks, rules: rules)
        #expect(none.chosen == nil && none.rejected.allSatisfy { $0.reason == "Modality MR ≠ CT" })
    }
}

struct CasePipelineTests {
    /// The demo profile without mirroring (faster), with an absolute model path.
    static func fastProfile() throws -> CaseProfile {
        let text = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "../Fixtures/demo/model", with: CaseProfileTests.model)
            .replacingOccurrences(of: "mirroring: true", with: "mirroring: false")
        return try CaseProfile(contentsOf: try CaseProfileTests.write(text))
    }

    /// Acceptance: 50 cases through the pipeline leave 50 complete, verifiable audit records.
    @Test func fiftyCasesLeaveFiftyCompleteRecords() throws {
        let dir = try SharedData.temporaryDirectory("pipeline")
        defer { try? FileManager.default.removeItem(at: dir) }
        let audit = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: try TestKeys.auditKeys())
        let pipeline = try CasePipeline(profile: try Self.fastProfile(), audit: audit)
        let studies = ["dicom-zoo/mr-hippocrop/study1", "dicom-zoo/mr-hippocrop/study2"]
        var ids: [String] = []
        for i in 0..<50 {
            let result = try pipeline.run(study: SharedData.dataFile(studies[i % 2]), output: dir.appendingPathComponent("out"))
            #expect(result.status == "SUCCEEDED", "\(result.error ?? "")")
            ids.append(result.caseID)
        }
        #expect(Set(ids).count == 50)
        #expect(try audit.cases().count == 50)
        #expect(try audit.verify() == .intact(events: 50 * 16))
        for id in ids.prefix(3) {
            let kinds = try audit.events(caseID: id).map(\.kind)
            #expect(kinds == ["case_started", "input_series", "model", "preflight", "output", "output", "output", "output", "output", "verification", "roi_volume", "roi_volume",
                              "contour_cleanup", "stage_timings", "resources", "case_summary"])
        }
        let resources = try #require(try audit.events(caseID: ids[0]).first { $0.kind == "resources" }.flatMap { AuditValue.parse($0.payload)?.object })
        #expect((resources["peak_rss_mb"]?.int ?? 0) > 10, "the process's peak memory is recorded: \(resources)")
        // Outputs of a case, and what the audit says about them.
        let events = try audit.events(caseID: ids[0])
        let outputs = events.filter { $0.kind == "output" }.compactMap { AuditValue.parse($0.payload)?.object }
        for o in outputs {
            let path = try #require(o["path"]?.string)
            #expect(FileManager.default.fileExists(atPath: path))
        }
        // Issue #17: the outputs were read back and verified, per ROI.
        let verification = try #require(events.first { $0.kind == "verification" }.flatMap { AuditValue.parse($0.payload)?.object })
        #expect(verification["passed"] == .bool(true) && verification["rois"]?.array?.count == 2, "\(verification)")
        #expect(verification["rois"]?.array?.allSatisfy { $0.object?["seg_mismatched_voxels"] == .int(0) } == true)
        // Smooth contours were drawn from the model's margin (the prediction was at hand).
        let contouring = try #require(events.first { $0.kind == "contour_cleanup" }.flatMap { AuditValue.parse($0.payload)?.object })
        #expect(contouring["contours"]?.string == "smooth" && contouring["contour_source"]?.string == "model-confidence", "\(contouring)")
        let input = try #require(AuditValue.parse(events[1].payload)?.object)
        #expect(input["patient_id_form"]?.string == "hmac-sha256" && input["pseudonym_key_id"]?.string?.count == 16)
        let model = try #require(AuditValue.parse(events[2].payload)?.object)
        #expect(model["files"]?.object?["fold_0/checkpoint_final.pth"]?.string?.count == 64)
    }

    /// Issue #13: labels above 255 (a region-based model whose regions_class_order is 256, 300, 400) stay
    /// themselves end to end: NIfTI uint16, and every structure in SEG and RTSTRUCT — never clamped to 255.
    @Test func labelsAbove255AreNotClamped() throws {
        let dir = try SharedData.temporaryDirectory("labels16")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = dir.appendingPathComponent("model")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: CaseProfileTests.model), to: model)
        var dataset = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("dataset.json"))) as? [String: Any])
        dataset["labels"] = ["background": 0, "r1": [1, 2], "r2": [2], "r3": [3]]
        dataset["regions_class_order"] = [256, 300, 400]
        try JSONSerialization.data(withJSONObject: dataset).write(to: model.appendingPathComponent("dataset.json"))
        let profile = try CaseProfile(contentsOf: try CaseProfileTests.write("""
            name: regions
            model: {folder: \(model.path), folds: [0]}
            selection: {modality: MR}
            inference: {mirroring: false}
            structures: [{label: 256, name: R256}, {label: 300, name: R300}, {label: 400, name: R400}]
            """))
        let audit = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: try TestKeys.auditKeys())
        let result = try CasePipeline(profile: profile, audit: audit).run(study: SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr"),
                                                                          output: dir.appendingPathComponent("out"))
        #expect(result.status == "SUCCEEDED", "\(result.error ?? "")")
        let image = try NIfTIImage(contentsOf: result.outputFolder.appendingPathComponent("labels.nii.gz"))
        #expect(image.voxels.dataType == .uint16)
        let values = Set(try image.labelVolume().voxels)
        #expect(values.isSubset(of: [0, 256, 300, 400]) && values.contains { $0 > 255 }, "\(values)")
        #expect(result.outputs == ["labels.nii.gz", "seg.dcm", "rtstruct.dcm", "qa.png", "report.html"])
        // Each present label is its own segment and ROI (not merged into one clamped value).
        let present = values.subtracting([0]).count
        let roiVolumes = try audit.events(caseID: result.caseID).filter { $0.kind == "roi_volume" }
            .compactMap { AuditValue.parse($0.payload)?.object?["cm3"] }.filter { $0 != .double(0) }
        #expect(roiVolumes.count == present)
    }

    /// Issue #24: an anonymised series (no Study/Series UIDs, SOP Instance UIDs only in the file meta) fails
    /// before inference, naming the attributes; with `outputs.repairMissingUIDs` it succeeds and says so in the
    /// outputs. Issue #17: the same case twice gives the same output UIDs.
    @Test func anonymisedSeriesFailsBeforeInferenceUnlessRepairIsAsked() throws {
        let dir = try SharedData.temporaryDirectory("pipeline-anon")
        defer { try? FileManager.default.removeItem(at: dir) }
        let study = dir.appendingPathComponent("study")
        try FileManager.default.copyItem(at: SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr"), to: study)
        let files = try FileManager.default.contentsOfDirectory(atPath: study.path).map { study.appendingPathComponent($0).path }
        let modified = try CommandRunner.run("/usr/bin/dcmodify", ["-nb", "-nmu", "-ma", "(0020,000d)=", "-ma", "(0020,000e)=", "-ea", "(0008,0018)"] + files)
        try #require(modified.status == 0, "\(modified.stderr)")
        let audit = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: try TestKeys.auditKeys())
        let started = Date()
        let refused = try CasePipeline(profile: try Self.fastProfile(), audit: audit).run(study: study, output: dir.appendingPathComponent("out"))
        let seconds = Date().timeIntervalSince(started)
        #expect(refused.status == "FAILED")
        let error = refused.error ?? ""
        #expect(error.hasPrefix("SOURCE_UIDS_MISSING") && error.contains("StudyInstanceUID (0020,000D)") && error.contains("SeriesInstanceUID (0020,000E)")
                && error.contains("SOPInstanceUID (0008,0018) in 32 of 32 instances") && !error.contains("SOPClassUID"), "\(error)")
        // Before inference: nothing was predicted (no stage timings), nothing written.
        let kinds = try audit.events(caseID: refused.caseID).map(\.kind)
        #expect(kinds == ["case_started", "input_series", "model", "case_summary"], "\(kinds)")
        #expect(!FileManager.default.fileExists(atPath: refused.outputFolder.path))
        print("anonymised series refused after \(String(format: "%.2f", seconds)) s")

        let text = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "../Fixtures/demo/model", with: CaseProfileTests.model)
            .replacingOccurrences(of: "mirroring: true", with: "mirroring: false")
            .replacingOccurrences(of: "  nifti: true", with: "  nifti: true\n  repairMissingUIDs: true")
        let repairing = try CasePipeline(profile: try CaseProfile(contentsOf: try CaseProfileTests.write(text)), audit: audit)
        var uids: [[String]] = []
        for _ in 0..<2 {
            let result = try repairing.run(study: study, output: dir.appendingPathComponent("out"))
            #expect(result.status == "SUCCEEDED", "\(result.error ?? "")")
            let events = try audit.events(caseID: result.caseID)
            let preflight = try #require(events.first { $0.kind == "preflight" }.flatMap { AuditValue.parse($0.payload)?.object })
            #expect(preflight["repair_missing_uids"] == .bool(true) && preflight["repaired"]?.string?.contains("SOPInstanceUID from the file meta") == true)
            uids.append(events.filter { $0.kind == "output" }.compactMap { AuditValue.parse($0.payload)?.object }
                .flatMap { [$0["series_uid"]?.string, $0["sop_uid"]?.string].compactMap { $0 } })
            let dump = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "0008,2111", result.outputFolder.appendingPathComponent("seg.dcm").path])
            #expect(dump.stdout.contains("repairMissingUIDs"))
        }
        #expect(uids[0].count == 4 && uids[0] == uids[1], "\(uids)")
    }

    @Test func failedCaseIsRecordedWithItsReason() throws {
        let dir = try SharedData.temporaryDirectory("pipeline-fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let audit = try AuditLog(path: dir.appendingPathComponent("audit.sqlite").path, keys: try TestKeys.auditKeys())
        let pipeline = try CasePipeline(profile: try Self.fastProfile(), audit: audit)
        // A CT study: nothing matches the MR profile.
        let result = try pipeline.run(study: SharedData.dataFile("dicom-zoo/seg-dcmqi-liver/ct-3slice"), output: dir.appendingPathComponent("out"))
        #expect(result.status == "FAILED")
        #expect(result.error?.hasPrefix("NO_MATCHING_SERIES") == true)
        let recorded = try #require(try audit.cases().first)
        #expect(recorded.status == "FAILED" && recorded.error?.contains("Modality CT ≠ MR") == true)
        #expect(!FileManager.default.fileExists(atPath: result.outputFolder.path))
        #expect(try audit.verify() == .intact(events: 2))
    }
}
