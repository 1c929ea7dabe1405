import Foundation
import Testing
import TestSupport

/// `nnseg model export|install|verify|list` (#21) as a site uses them: a signed bundle from a trained model folder,
/// unpacked the way nnU-Net's installer does it (Python's zipfile into nnUNet_results) and predicting exactly as the
/// source folder; installed by nnseg, named by a profile with its hash, recorded in the audit log; a tampered copy
/// refused with nothing installed.
struct ModelCommandTests {
    @Test func aSignedBundleRoundTripsThroughNnUNetsLayoutAndAProfile() throws {
        let dir = try SharedData.temporaryDirectory("model-command")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = SharedData.fixtures.appendingPathComponent("demo/model")
        let zip = dir.appendingPathComponent("hippo.zip")
        let export = try CommandRunner.nnseg(["model", "export", "--model", source.path, "--id", "hippo-demo", "--signing-key", TestKeys.signingPath,
                                              "--description", "demo model, fold 0", "-o", zip.path])
        #expect(export.status == 0, "\(export.stderr)")
        let hash = try #require(export.stdout.split(separator: "\n").first { $0.hasPrefix("sha256") }?.split(separator: " ").last.map(String.init))
        #expect(hash.count == 64)
        let check = try CommandRunner.nnseg(["model", "verify", zip.path, "--public-key", TestKeys.publicKeyPath])
        #expect(check.status == 0 && check.stdout.contains("ok        hippo-demo") && check.stdout.contains("signature valid"), "\(check.stdout)\(check.stderr)")

        // nnUNetv2_install_pretrained_model_from_zip is `ZipFile(zip).extractall(nnUNet_results)`: the same here.
        let results = dir.appendingPathComponent("nnUNet_results")
        let unzip = try CommandRunner.run("/usr/bin/python3", ["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
                                                               zip.path, results.path])
        #expect(unzip.status == 0, "\(unzip.stderr)")
        let unpacked = results.appendingPathComponent("Dataset004_Hippocampus/nnUNetTrainer_1epoch__nnUNetPlans__3d_fullres")
        let input = dir.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: PredictCommandTests.reference.appendingPathComponent("predictions/input/hippocampus_033_0000.nii.gz"),
                                         to: input.appendingPathComponent("hippocampus_033_0000.nii.gz"))
        for (name, model) in [("from-source", source), ("from-bundle", unpacked)] {
            let predict = try CommandRunner.nnseg(["predict", "-i", input.path, "-o", dir.appendingPathComponent(name).path, "-m", model.path,
                                                   "-f", "0", "--disable-tta"])
            #expect(predict.status == 0, "\(predict.stderr)")
        }
        #expect(try PredictCommandTests.voxels(dir.appendingPathComponent("from-source/hippocampus_033.nii.gz"))
                == PredictCommandTests.voxels(dir.appendingPathComponent("from-bundle/hippocampus_033.nii.gz")))

        // Installed by nnseg, listed with its provenance.
        let models = dir.appendingPathComponent("models")
        let install = try CommandRunner.nnseg(["model", "install", zip.path, "--models", models.path, "--public-key", TestKeys.publicKeyPath])
        #expect(install.status == 0 && install.stdout.contains("installed hippo-demo (sha256 \(hash))"), "\(install.stdout)\(install.stderr)")
        let list = try CommandRunner.nnseg(["model", "list", "--models", models.path, "--json"])
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(listed.count == 1 && listed[0]["id"] as? String == "hippo-demo" && listed[0]["sha256"] as? String == hash)
        #expect(listed[0]["description"] as? String == "demo model, fold 0" && listed[0]["signed_by"] as? String != nil)
        let text = try CommandRunner.nnseg(["model", "list", "--models", models.path])
        #expect(text.stdout.contains("fold 0: 1 epochs"), "\(text.stdout)")

        // A profile names it by ID and hash; the case's audit records which bundle produced it.
        let profileText = try String(contentsOf: CasePipelineProfiles.fastDemoProfile(in: dir), encoding: .utf8)
            .replacingOccurrences(of: "  folder: \(source.path)\n",
                                  with: "  bundle: hippo-demo\n  sha256: \(hash)\n  models: \(models.path)\n  publicKey: \(TestKeys.publicKeyPath)\n")
        #expect(profileText.contains("bundle: hippo-demo"))
        let profile = dir.appendingPathComponent("bundle-profile.yaml")
        try profileText.write(to: profile, atomically: true, encoding: .utf8)
        let database = dir.appendingPathComponent("audit.sqlite").path
        let run = try CommandRunner.nnseg(["run", "--profile", profile.path, SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                           "-o", dir.appendingPathComponent("out").path, "--audit-db", database])
        #expect(run.status == 0, "\(run.stderr)")
        let payload = try CommandRunner.run("/usr/bin/sqlite3", [database, "SELECT payload FROM events WHERE kind = 'model'"])
        let model = try #require(try JSONSerialization.jsonObject(with: Data(payload.stdout.utf8)) as? [String: Any])
        let bundle = try #require(model["bundle"] as? [String: Any], "\(payload.stdout)")
        #expect(bundle["id"] as? String == "hippo-demo" && bundle["sha256"] as? String == hash && bundle["signed_by"] as? String != nil)

        // A copy with one changed byte in the checkpoint: refused, nothing installed.
        let tampered = dir.appendingPathComponent("tampered.zip")
        let rewrite = try CommandRunner.run("/usr/bin/python3", ["-c", """
            import sys, zipfile
            with zipfile.ZipFile(sys.argv[1]) as a, zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as b:
                for info in a.infolist():
                    data = a.read(info)
                    if info.filename.endswith("checkpoint_final.pth"):
                        data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:]
                    b.writestr(info.filename, data)
            """, zip.path, tampered.path])
        #expect(rewrite.status == 0, "\(rewrite.stderr)")
        let elsewhere = dir.appendingPathComponent("models-2")
        let refused = try CommandRunner.nnseg(["model", "install", tampered.path, "--models", elsewhere.path])
        #expect(refused.status != 0 && refused.stderr.contains("BUNDLE_TAMPERED") && refused.stderr.contains("checkpoint_final.pth"), "\(refused.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: elsewhere.path)) ?? []
        #expect(left.isEmpty, "installed despite the refusal: \(left)")
    }
}
