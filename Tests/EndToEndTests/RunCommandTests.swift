import BatchPipeline
import Foundation
import NIfTI
import Testing
import TestSupport

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
        #expect(verify.status == 0 && verify.stdout.contains("audit log intact: 16 event(s) verified"))
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
        #expect(broken.stdout.contains("audit log BROKEN at event 16"))
    }
}
