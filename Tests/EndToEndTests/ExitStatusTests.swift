import Foundation
import Testing
import TestSupport

/// README "Exit codes": the same status with and without `--json`, and the JSON names the same error code as
/// the text (issue #23); folders of symbolic links read like folders of files.
struct ExitStatusTests {
    struct Outcome: Equatable {
        var status: Int32
        var code: String?
    }

    /// Runs `inspect` both ways; returns the status and the error code each way reports.
    func inspectBothWays(_ path: String) throws -> (text: Outcome, json: Outcome) {
        let text = try CommandRunner.nnseg(["inspect", path])
        let json = try CommandRunner.nnseg(["inspect", path, "--json"])
        let textCode = text.stderr.split(separator: "\n").first { $0.hasPrefix("Error: ") }
            .map { String($0.dropFirst(7).prefix { $0 != ":" }) }
        let document = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let jsonCode = (document?["error"] as? [String: Any])?["code"] as? String
        return (Outcome(status: text.status, code: textCode), Outcome(status: json.status, code: jsonCode))
    }

    @Test func inspectStatusesAgreeWithAndWithoutJSON() throws {
        let dir = try SharedData.temporaryDirectory("exit-status")
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try Data("hello".utf8).write(to: empty.appendingPathComponent("readme.txt"))
        let cases: [(String, Outcome)] = [
            (SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr").path, Outcome(status: 0, code: nil)),
            (empty.path, Outcome(status: 2, code: "NO_IMAGE_SERIES")),
            (dir.appendingPathComponent("missing").path, Outcome(status: 1, code: "READ_FAILED")),
        ]
        for (path, expected) in cases {
            let (text, json) = try inspectBothWays(path)
            #expect(text == expected, "\(path) as text")
            #expect(json == expected, "\(path) as JSON")
        }
        // Usage errors are 64 either way.
        #expect(try CommandRunner.nnseg(["inspect", "--no-such-flag", empty.path]).status == 64)
        #expect(try CommandRunner.nnseg(["inspect", "--json", "--no-such-flag", empty.path]).status == 64)
        // An audit database that does not exist: nothing found.
        let show = try CommandRunner.nnseg(["audit", "show", "case-unknown", "--database", dir.appendingPathComponent("a.sqlite").path])
        #expect(show.status == 2 && show.stderr.contains("AUDIT_DB_NOT_FOUND"), "\(show.stderr)")
        // predict on a folder without cases: nothing found, named.
        let predict = try CommandRunner.nnseg(["predict", "-i", empty.path, "-o", dir.appendingPathComponent("out").path,
                                               "-m", SharedData.fixtures.appendingPathComponent("demo/model").path, "-f", "0"])
        #expect(predict.status == 2 && predict.stderr.contains("NO_IMAGE_SERIES"), "\(predict.stderr)")
    }

    /// A folder of symbolic links (to files, and a link to a folder, with a loop and a broken link beside them)
    /// reads as the series in `inspect`, `predict` and `run`.
    @Test func foldersOfSymbolicLinksAreRead() throws {
        let dir = try SharedData.temporaryDirectory("symlinks")
        defer { try? FileManager.default.removeItem(at: dir) }
        let fm = FileManager.default
        let series = SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr")
        let links = dir.appendingPathComponent("links")
        try fm.createDirectory(at: links.appendingPathComponent("files"), withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: series.path) where name.hasSuffix(".dcm") {
            try fm.createSymbolicLink(at: links.appendingPathComponent("files/\(name)"), withDestinationURL: series.appendingPathComponent(name))
        }
        try fm.createSymbolicLink(at: links.appendingPathComponent("files/loop"), withDestinationURL: links)
        try fm.createSymbolicLink(atPath: links.appendingPathComponent("broken.dcm").path, withDestinationPath: "/nonexistent.dcm")
        let viaFolderLink = dir.appendingPathComponent("folder-link")
        try fm.createSymbolicLink(at: viaFolderLink, withDestinationURL: links)

        for path in [links.path, viaFolderLink.path] {
            let inspect = try CommandRunner.nnseg(["inspect", path, "--json"])
            #expect(inspect.status == 0, "\(inspect.stderr)")
            let document = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            let stacks = try #require(document["stacks"] as? [[String: Any]])
            #expect(stacks.count == 1 && stacks.first?["instances"] as? Int == 32)
            let skipped = (document["skipped"] as? [[String: Any]] ?? []).compactMap { $0["reason"] as? String }
            #expect(skipped.contains { $0.contains("broken symbolic link") } && skipped.contains { $0.contains("loops back") }, "\(skipped)")
        }
        let predicted = dir.appendingPathComponent("predicted")
        let predict = try CommandRunner.nnseg(["predict", "-i", links.path, "-o", predicted.path,
                                               "-m", SharedData.fixtures.appendingPathComponent("demo/model").path, "-f", "0", "--disable-tta"])
        #expect(predict.status == 0, "\(predict.stderr)")
        #expect(try fm.contentsOfDirectory(atPath: predicted.path).contains { $0.hasSuffix(".nii.gz") })
        let run = try CommandRunner.nnseg(["run", "--profile", SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml").path,
                                           viaFolderLink.path, "-o", dir.appendingPathComponent("out").path,
                                           "--audit-db", dir.appendingPathComponent("audit.sqlite").path])
        #expect(run.status == 0 && run.stdout.contains("SUCCEEDED"), "\(run.stdout)\(run.stderr)")
        // A case that is not in that audit log: nothing found.
        let show = try CommandRunner.nnseg(["audit", "show", "case-unknown", "--database", dir.appendingPathComponent("audit.sqlite").path])
        #expect(show.status == 2 && show.stderr.contains("CASE_NOT_FOUND"), "\(show.stderr)")
    }
}
