import Foundation
import Testing
import TestSupport

/// `nnseg plan` as a researcher runs it on a raw nnU-Net v2 dataset.
struct PlanCommandTests {
    /// Hippocampus: the fingerprint and plans files the command writes are the reference nnU-Net's, byte
    /// for byte; a second run reuses the fingerprint.
    @Test func hippocampusPlansEqualTheReferenceFiles() throws {
        let out = try SharedData.temporaryDirectory("plan")
        let result = try CommandRunner.nnseg(["plan", "-d", SharedData.dataFile("Dataset004_Hippocampus").path, "--output", out.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("3d_fullres  patch [40, 56, 40]  batch 9"))
        let ours = out.appendingPathComponent("Dataset004_Hippocampus")
        let reference = SharedData.reference.appendingPathComponent("Dataset004_Hippocampus")
        for file in ["nnUNetPlans.json", "dataset_fingerprint.json"] {
            #expect(try Data(contentsOf: ours.appendingPathComponent(file)) == Data(contentsOf: reference.appendingPathComponent(file)), "\(file)")
        }
        #expect(FileManager.default.fileExists(atPath: ours.appendingPathComponent("dataset.json").path))
        let again = try CommandRunner.nnseg(["plan", "-d", SharedData.dataFile("Dataset004_Hippocampus").path, "--output", out.path,
                                             "--planner", "resenc-m", "--skip-verify"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("reusing the existing fingerprint"))
        #expect(again.stdout.contains("3d_fullres  patch [40, 56, 40]  batch 58"))
        let plans = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: ours.appendingPathComponent("nnUNetResEncUNetMPlans.json"))) as? [String: Any])
        #expect(plans["experiment_planner_used"] as? String == "nnUNetPlannerResEncM")

        // Re-planning keeps a configuration someone added to the plans file, and still reproduces the rest.
        let plansFile = ours.appendingPathComponent("nnUNetPlans.json")
        var edited = try String(contentsOf: plansFile, encoding: .utf8)
        edited = edited.replacingOccurrences(of: "\"configurations\": {", with: "\"configurations\": {\"3d_fullres_bs2\": {\"inherits_from\": \"3d_fullres\", \"batch_size\": 2},")
        try edited.write(to: plansFile, atomically: true, encoding: .utf8)
        let replanned = try CommandRunner.nnseg(["plan", "-d", SharedData.dataFile("Dataset004_Hippocampus").path, "--output", out.path, "--skip-verify"])
        #expect(replanned.status == 0, "\(replanned.stderr)")
        let kept = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: plansFile)) as? [String: Any])
        let keptConfigurations = try #require(kept["configurations"] as? [String: [String: Any]])
        #expect(keptConfigurations["3d_fullres_bs2"]?["batch_size"] as? Int == 2)
        #expect(keptConfigurations["3d_fullres"]?["batch_size"] as? Int == 9)

        // Then preprocess 3d_fullres from those plans: every case, one of them checked against nnU-Net's.
        let pre = try CommandRunner.nnseg(["preprocess", "-d", SharedData.dataFile("Dataset004_Hippocampus").path, "--output", out.path,
                                           "-c", "3d_fullres"])
        #expect(pre.status == 0, "\(pre.stderr)")
        #expect(pre.stdout.contains("3d_fullres: 260 case(s)"))
        let folder = ours.appendingPathComponent("nnUNetPlans_3d_fullres")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        #expect(files.filter { $0.hasSuffix("_seg.npy") }.count == 260 && files.filter { $0.hasSuffix(".json") }.count == 260)
        let golden = try NumpyArray.npz(SharedData.fixtures.appendingPathComponent("golden/preprocessing/hippocampus_006_3d_fullres.npz"))
        let data = try NumpyArray(contentsOf: folder.appendingPathComponent("hippocampus_006.npy"))
        #expect(data.shape == golden["data"]!.shape && zip(data.floats, golden["data"]!.floats).allSatisfy { abs($0 - $1) <= 1e-4 })
    }

    /// A raw dataset that brings its own splits_final.json: checked and copied next to the plans.
    @Test func ownSplitsAreCopied() throws {
        let ids = ["hippocampus_001", "hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_007"]
        let raw = try SharedData.hippocampusSubset(ids, name: "Dataset997_Five")
        let splits = [["train": Array(ids.prefix(4)), "val": [ids[4]]]]
        try JSONSerialization.data(withJSONObject: splits).write(to: raw.appendingPathComponent("splits_final.json"))
        let out = raw.deletingLastPathComponent().appendingPathComponent("out")
        let result = try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", out.path])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try Data(contentsOf: out.appendingPathComponent("Dataset997_Five/splits_final.json")) == Data(contentsOf: raw.appendingPathComponent("splits_final.json")))
        // A splits file naming a case the dataset does not have is refused.
        try JSONSerialization.data(withJSONObject: [["train": ["hippocampus_999"], "val": [ids[0]]]]).write(to: raw.appendingPathComponent("splits_final.json"))
        let bad = try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", out.path, "--skip-verify"])
        #expect(bad.status != 0 && bad.stderr.contains("splits_final.json: fold 0 names 1 case(s) not in the dataset"))
    }

    @Test func preprocessWithoutPlansSaysWhatToRun() throws {
        let out = try SharedData.temporaryDirectory("preprocess-noplans")
        let result = try CommandRunner.nnseg(["preprocess", "-d", SharedData.dataFile("Dataset004_Hippocampus").path, "--output", out.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("Dataset004_Hippocampus/nnUNetPlans.json: no plans; run `nnseg plan"))
    }

    /// A damaged dataset: every problem is named with its file, and nothing is planned.
    @Test func integrityProblemsAreNamedAndNothingIsWritten() throws {
        let source = SharedData.dataFile("Dataset004_Hippocampus")
        let fm = FileManager.default
        let raw = try SharedData.hippocampusSubset(["hippocampus_001", "hippocampus_003", "hippocampus_004"], name: "Dataset998_Broken",
                                                   numTraining: 5)
        try fm.removeItem(at: raw.appendingPathComponent("labelsTr/hippocampus_003.nii.gz"))
        // Case 004 gets the label of case 001 (a different size).
        try fm.removeItem(at: raw.appendingPathComponent("labelsTr/hippocampus_004.nii.gz"))
        try fm.copyItem(at: source.appendingPathComponent("labelsTr/hippocampus_001.nii.gz"), to: raw.appendingPathComponent("labelsTr/hippocampus_004.nii.gz"))
        let out = raw.deletingLastPathComponent().appendingPathComponent("out")
        let result = try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", out.path])
        #expect(result.status != 0)
        #expect(result.stderr.contains("dataset.json: numTraining is 5 but imagesTr holds 3 case(s)"))
        #expect(result.stderr.contains("labelsTr/hippocampus_003.nii.gz: label file missing"))
        #expect(result.stderr.contains("labelsTr/hippocampus_004.nii.gz: size"))
        #expect(result.stderr.contains("3 integrity problem(s); nothing was planned"))
        #expect(!fm.fileExists(atPath: out.path))
    }
}
