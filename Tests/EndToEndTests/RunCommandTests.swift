import BatchPipeline
import Foundation
import NIfTI
import Testing
import TestSupport
import SiteProfile

/// The README's main job: `nnseg run` on the bundled demo, then the audit commands.
struct RunCommandTests {
    @Test func demoCaseProducesValidOutputsAndAVerifiableAuditRow() throws {
        let dir = try SharedData.temporaryDirectory("run")
        defer { try? FileManager.default.removeItem(at: dir) }
        let database = dir.appendingPathComponent("audit.sqlite").path
        let result = try CommandRunner.nnseg(["run", "--profile", SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml").path,
                                              SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                              "-o", dir.appendingPathComponent("out").path, "--audit-db", database])
        #expect(result.status == 0, "\(result.stderr)")
        let outputs = result.stdout.split(separator: "\n").filter { $0.hasPrefix("output") }.map { String($0.dropFirst(10)) }
        #expect(outputs.map { URL(fileURLWithPath: $0).lastPathComponent } == ["labels.nii.gz", "seg.dcm", "rtstruct.dcm", "qa.png", "report.html"])
        for file in outputs where file.hasSuffix(".dcm") {
            let report = try CommandRunner.run("/usr/bin/dciodvfy", ["-new", file])
            #expect(!(report.stdout + report.stderr).contains("\nError"), "dciodvfy \(file)")
        }
        // dcmqi, pydicom-seg and dcmrtstruct2nii read the demo case's SEG and RTSTRUCT back (issue #17).
        let labels = try NIfTIImage(contentsOf: URL(fileURLWithPath: outputs[0])).labelVolume()
        let profile = try CaseProfile(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"))
        let present = Set(labels.voxels)
        try ThirdPartyReaders.check(seg: URL(fileURLWithPath: outputs[1]), rtstruct: URL(fileURLWithPath: outputs[2]),
                                    source: SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr"), labels: labels,
                                    structures: profile.structures.filter { present.contains(UInt16($0.label)) })
        let png = try Data(contentsOf: URL(fileURLWithPath: outputs[3]))
        #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        let verify = try CommandRunner.nnseg(["audit", "verify", "--database", database])
        #expect(verify.status == 0 && verify.stdout.contains("audit log intact: 16 event(s), 1 case(s) verified"), "\(verify.stdout)")
        // #18: the case is signed and its receipt lies beside its outputs; both check out with the public key.
        let caseFolder = URL(fileURLWithPath: outputs[0]).deletingLastPathComponent()
        #expect(FileManager.default.fileExists(atPath: caseFolder.appendingPathComponent("receipt.json").path))
        let signed = try CommandRunner.nnseg(["audit", "verify", "--database", database, "--public-key", TestKeys.publicKeyPath,
                                              "--receipts", dir.appendingPathComponent("out").path])
        #expect(signed.status == 0 && signed.stdout.contains("1 signed case(s)") && signed.stdout.contains("1 receipt(s)"), "\(signed.stdout)")
        let csv = try CommandRunner.nnseg(["audit", "export", "--database", database, "--format", "csv"])
        #expect(csv.stdout.split(separator: "\n").count == 2 && csv.stdout.contains("SUCCEEDED"))
        // Patient data never in plain text: the demo's PatientID does not appear in the log.
        let patientID = try CommandRunner.run("/usr/bin/dcmdump", ["+P", "0010,0020", SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr/1.dcm").path])
        if let value = patientID.stdout.split(separator: "[").dropFirst().first?.split(separator: "]").first, !value.isEmpty {
            let dump = try CommandRunner.run("/usr/bin/sqlite3", [database, "SELECT payload FROM events"])
            #expect(!dump.stdout.contains(String(value)))
        }
        // A row edited by hand (triggers dropped) makes verify fail at that row.
        let edit = try CommandRunner.run("/usr/bin/sqlite3", [database,
            "DROP TRIGGER events_no_update; UPDATE events SET payload = replace(payload, 'SUCCEEDED', 'EDITED') WHERE kind = 'case_summary';"])
        #expect(edit.status == 0, "\(edit.stderr)")
        let broken = try CommandRunner.nnseg(["audit", "verify", "--database", database])
        #expect(broken.status == 3)  // README, exit codes: 3 = audit log does not verify
        #expect(broken.stdout.contains("audit log BROKEN") && broken.stdout.contains("[chain] event 16"), "\(broken.stdout)")
    }

    /// #18: `audit export --format log` and `Ops/verify_audit.py` (Python + cryptography) verify the log without
    /// nnseg — intact as written; after an intruder edits a payload and recomputes the whole chain (which nnseg's
    /// own chain check cannot see) the independent check fails on the signature.
    @Test func theLogVerifiesIndependentlyOfNnseg() throws {
        guard let python = SharedData.validationPython else {
            Issue.record("the validator venv is missing: bash Ops/setup.sh --test"); return
        }
        let dir = try SharedData.temporaryDirectory("audit-independent")
        defer { try? FileManager.default.removeItem(at: dir) }
        let database = dir.appendingPathComponent("audit.sqlite").path
        let run = try CommandRunner.nnseg(["run", "--profile", CasePipelineProfiles.fastDemoProfile(in: dir).path,
                                           SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                           "-o", dir.appendingPathComponent("out").path, "--audit-db", database])
        #expect(run.status == 0, "\(run.stderr)")
        let script = SharedData.repositoryRoot.appendingPathComponent("Ops/verify_audit.py").path
        func independent() throws -> CommandRunner.Result {
            let export = try CommandRunner.nnseg(["audit", "export", "--database", database, "--format", "log"])
            #expect(export.status == 0, "\(export.stderr)")
            let file = dir.appendingPathComponent("log.json")
            try Data(export.stdout.utf8).write(to: file)
            return try CommandRunner.run(python, [script, file.path, "--public-key", TestKeys.publicKeyPath,
                                                  "--receipts", dir.appendingPathComponent("out").path])
        }
        let clean = try independent()
        #expect(clean.status == 0 && clean.stdout.contains("audit log intact (independent check)"), "\(clean.stdout)\(clean.stderr)")
        // The intruder: triggers dropped, a payload edited, every hash recomputed (Python's sqlite3 and hashlib).
        let rechain = """
            import hashlib, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            db.execute("DROP TRIGGER events_no_update")
            db.execute("UPDATE events SET payload = replace(payload, 'SUCCEEDED', 'FAILED') WHERE kind = 'case_summary'")
            db.execute("DROP TRIGGER cases_no_update")
            db.execute("UPDATE cases SET status = 'FAILED'")
            previous = "genesis"
            for (i, c, k, r, p) in db.execute("SELECT id, case_id, kind, recorded_at, payload FROM events ORDER BY id").fetchall():
                h = hashlib.sha256(f"{previous}|{i}|{c}|{k}|{r}|{p}".encode()).hexdigest()
                db.execute("UPDATE events SET previous_hash = ?, hash = ? WHERE id = ?", (previous, h, i))
                previous = h
            db.commit()
            """
        let tampered = try CommandRunner.run(python, ["-c", rechain, database])
        #expect(tampered.status == 0, "\(tampered.stderr)")
        let chainOnly = try CommandRunner.nnseg(["audit", "verify", "--database", database])
        #expect(chainOnly.status == 0, "the chain alone cannot see a recomputed chain: \(chainOnly.stdout)")
        let after = try independent()
        #expect(after.status == 3 && after.stdout.contains("[signature]") && after.stdout.contains("[receipt]"), "\(after.stdout)\(after.stderr)")
        let nnsegCheck = try CommandRunner.nnseg(["audit", "verify", "--database", database, "--public-key", TestKeys.publicKeyPath])
        #expect(nnsegCheck.status == 3 && nnsegCheck.stdout.contains("[signature]"), "\(nnsegCheck.stdout)")
    }

    /// #18: without a pseudonym key a case that pseudonymises patient IDs fails at once, naming the fix.
    @Test func aCaseWithoutAPseudonymKeyFailsAtOnce() throws {
        let dir = try SharedData.temporaryDirectory("run-nokey")
        defer { try? FileManager.default.removeItem(at: dir) }
        let result = try CommandRunner.nnseg(["run", "--profile", CasePipelineProfiles.fastDemoProfile(in: dir).path,
                                              SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path,
                                              "-o", dir.appendingPathComponent("out").path, "--audit-db", dir.appendingPathComponent("a.sqlite").path],
                                             environment: ["NNSEG_PSEUDONYM_KEY": ""])
        #expect(result.status == 1 && result.stdout.contains("PSEUDONYM_KEY_MISSING"), "\(result.stdout)\(result.stderr)")
        let events = try CommandRunner.run("/usr/bin/sqlite3", [dir.appendingPathComponent("a.sqlite").path, "SELECT kind FROM events"])
        #expect(!events.stdout.contains("input_series"), "nothing was read before the refusal: \(events.stdout)")
    }
}

/// The demo profile for command tests: an absolute model path, no mirroring (fast).
enum CasePipelineProfiles {
    static func fastDemoProfile(in dir: URL) throws -> URL {
        let text = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "../Fixtures/demo/model", with: SharedData.fixtures.appendingPathComponent("demo/model").path)
            .replacingOccurrences(of: "mirroring: true", with: "mirroring: false")
        let url = dir.appendingPathComponent("profile.yaml")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }
}
