import Foundation
import Testing
import TestSupport
import WatchService
#if canImport(Glibc)
import Glibc
#endif

/// Issue #23: deliveries as routers and modalities make them — slower than the quiet period, in bursts,
/// a file written in two halves, stragglers after the series was processed, DCMTK's storescu → storescp
/// (flat and one folder per study), symbolic links. Real files, the real `nnseg watch` process, real timing;
/// every wait is on an observable event (a file, a folder, an audit row) with a deadline.
@Suite(.serialized, .ownThreads)
struct WatchDeliveryTests {
    /// A running `nnseg watch` on a temporary incoming folder with the demo model (no mirroring).
    final class Harness {
        let dir: URL
        let incoming: URL, outgoing: URL, archive: URL, database: URL
        let quietPeriod: Double
        var process: Process?

        init(_ name: String, quietPeriod: Double, pollInterval: Double = 0.2, extraArguments: [String] = [], environment: [String: String] = [:]) throws {
            dir = try SharedData.temporaryDirectory(name)
            incoming = dir.appendingPathComponent("in")
            outgoing = dir.appendingPathComponent("out")
            archive = dir.appendingPathComponent("archive")
            database = dir.appendingPathComponent("audit.sqlite")
            self.quietPeriod = quietPeriod
            try FileManager.default.createDirectory(at: incoming, withIntermediateDirectories: true)
            let demo = try String(contentsOf: SharedData.repositoryRoot.appendingPathComponent("Profiles/hippocampus-demo.yaml"), encoding: .utf8)
            let profile = dir.appendingPathComponent("profile.yaml")
            try Data(demo.replacingOccurrences(of: "../Fixtures/demo/model", with: SharedData.fixtures.appendingPathComponent("demo/model").path)
                .replacingOccurrences(of: "mirroring: true", with: "mirroring: false").utf8).write(to: profile)
            process = try CommandRunner.launch(["watch", "--profile", profile.path, "--incoming", incoming.path, "--outgoing", outgoing.path,
                                                "--archive", archive.path, "--quiet-period", "\(quietPeriod)", "--poll-interval", "\(pollInterval)",
                                                "--audit-db", database.path] + extraArguments, environment: environment)
        }

        deinit {
            stop()
            try? FileManager.default.removeItem(at: dir)
        }

        func stop() {
            guard let p = process, p.isRunning else { return }
            kill(p.processIdentifier, SIGTERM)
            p.waitForExit()
        }

        /// The audit log's cases (newest first).
        func cases() throws -> [[String: Any]] {
            guard FileManager.default.fileExists(atPath: database.path) else { return [] }
            let export = try CommandRunner.nnseg(["audit", "export", "--database", database.path, "--format", "json"])
            return (try? JSONSerialization.jsonObject(with: Data(export.stdout.utf8)) as? [[String: Any]]) ?? []
        }

        func statuses() throws -> [String] { try cases().compactMap { $0["status"] as? String }.sorted() }

        /// Entries (REASON.txt first lines) of a service folder: quarantine or held.
        func reasons(_ folder: String) -> [String] {
            let root = incoming.appendingPathComponent(".nnseg/\(folder)")
            return ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted().map {
                (try? String(contentsOf: root.appendingPathComponent($0).appendingPathComponent("REASON.txt"), encoding: .utf8)) ?? ""
            }
        }

        /// Files still waiting anywhere under incoming (not the service's own folder), plus claims in progress.
        func pending() -> Int {
            let fm = FileManager.default
            let work = (try? fm.contentsOfDirectory(atPath: incoming.appendingPathComponent(".nnseg/work").path)) ?? []
            var files = 0
            if let walker = fm.enumerator(atPath: incoming.path) {
                while let path = walker.nextObject() as? String {
                    if path == ".nnseg" { walker.skipDescendants(); continue }
                    var isFolder: ObjCBool = false
                    if fm.fileExists(atPath: incoming.appendingPathComponent(path).path, isDirectory: &isFolder), !isFolder.boolValue { files += 1 }
                }
            }
            return files + work.count
        }

        /// Waits until `condition` holds (checked every 0.1 s), at most `timeout` seconds.
        @discardableResult
        func waitUntil(_ timeout: TimeInterval = 90, _ condition: () throws -> Bool) rethrows -> Bool {
            try TestSupport.waitUntil(timeout, condition)
        }

        /// Waits until everything delivered has been claimed and finished, with `count` cases recorded.
        func waitForCases(_ count: Int) throws -> Bool {
            try waitUntil { try pending() == 0 && cases().count >= count }
        }
    }

    static let series = SharedData.fixtures.appendingPathComponent("demo/hippocampus-mr")
    static var seriesFiles: [URL] {
        ((try? FileManager.default.contentsOfDirectory(atPath: series.path)) ?? []).filter { $0.hasSuffix(".dcm") }.sorted()
            .map { series.appendingPathComponent($0) }
    }

    /// Writes a file as a router does: a new file, its content in one write.
    static func deliver(_ source: URL, to target: URL) throws {
        try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(contentsOf: source).write(to: target)
    }

    @Test(.timeLimit(.minutes(3)))
    func slowDeliveryIsOneCase() throws {
        let watch = try Harness("watch-slow", quietPeriod: 1)
        var previous = Date(), longestGap = 0.0
        for file in Self.seriesFiles {
            try Self.deliver(file, to: watch.incoming.appendingPathComponent(file.lastPathComponent))
            longestGap = max(longestGap, Date().timeIntervalSince(previous))
            previous = Date()
            usleep(250_000)
        }
        #expect(try watch.waitForCases(1))
        // The claim happens one quiet period after the last file; wait for one more quiet period to be sure
        // nothing else is claimed, then look.
        usleep(UInt32(watch.quietPeriod * 1.5 * 1e6))
        watch.stop()
        let statuses = try watch.statuses()
        // 32 files over 8 s with a 1 s quiet period: one claim. (Should the writer itself stall for longer than the
        // quiet period — an overloaded machine — a split would be correct, so the check names the gap.)
        if longestGap < watch.quietPeriod {
            #expect(statuses == ["SUCCEEDED"], "longest gap between two files \(longestGap) s")
        }
        #expect(watch.reasons("quarantine").isEmpty || longestGap >= watch.quietPeriod)
        print("slow delivery: 32 files, one every 0.25 s (longest gap \(String(format: "%.2f", longestGap)) s), quiet period 1 s → \(statuses)")
    }

    @Test(.timeLimit(.minutes(3)))
    func burstsAndAFileWrittenInTwoHalvesAreOneCase() throws {
        let watch = try Harness("watch-bursts", quietPeriod: 2)
        let files = Self.seriesFiles
        // Half the series, a pause shorter than the quiet period, most of the rest.
        for file in files.prefix(16) { try Self.deliver(file, to: watch.incoming.appendingPathComponent(file.lastPathComponent)) }
        usleep(800_000)
        for file in files.dropFirst(16).dropLast() { try Self.deliver(file, to: watch.incoming.appendingPathComponent(file.lastPathComponent)) }
        // The last file in two halves with a pause between: it must neither be quarantined nor let the series go early.
        let last = try Data(contentsOf: files.last!)
        let target = watch.incoming.appendingPathComponent(files.last!.lastPathComponent)
        let handle = try FileHandle(forWritingTo: { FileManager.default.createFile(atPath: target.path, contents: nil); return target }())
        try handle.write(contentsOf: last.prefix(last.count / 2))
        usleep(800_000)
        try handle.write(contentsOf: last.dropFirst(last.count / 2))
        try handle.close()
        #expect(try watch.waitForCases(1))
        usleep(UInt32(watch.quietPeriod * 1.5 * 1e6))
        watch.stop()
        #expect(try watch.statuses() == ["SUCCEEDED"])
        #expect(watch.reasons("quarantine").isEmpty, "\(watch.reasons("quarantine"))")
    }

    @Test(.timeLimit(.minutes(3)))
    func stragglersAreNeverACaseOfTheirOwn() throws {
        let watch = try Harness("watch-late", quietPeriod: 1)
        let files = Self.seriesFiles
        let work = watch.dir.appendingPathComponent("src")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        // A series delivered without one slice (12.dcm): it fails as incomplete and is quarantined…
        for file in files where file.lastPathComponent != "12.dcm" {
            try Self.deliver(file, to: watch.incoming.appendingPathComponent(file.lastPathComponent))
        }
        #expect(try watch.waitForCases(1))
        #expect(try watch.statuses() == ["FAILED"])
        #expect(watch.reasons("quarantine").first?.hasPrefix("GEOMETRY_GAPS") == true)
        // …then the missing slice arrives: the series is re-assembled from quarantine and processed as one case.
        try Self.deliver(Self.series.appendingPathComponent("12.dcm"), to: watch.incoming.appendingPathComponent("12.dcm"))
        #expect(try watch.waitUntil { try watch.statuses() == ["FAILED", "SUCCEEDED"] })
        let succeeded = try #require(try watch.cases().first { $0["status"] as? String == "SUCCEEDED" }?["case_id"] as? String)
        let show = try CommandRunner.nnseg(["audit", "show", succeeded, "--database", watch.database.path])
        #expect(show.stdout.contains("reassembled") && show.stdout.contains("\"files\":32"))
        #expect(watch.reasons("quarantine").isEmpty)

        // A straggler after success (a new instance of the processed series): held, naming the case.
        let straggler = work.appendingPathComponent("straggler.dcm")
        try FileManager.default.copyItem(at: Self.series.appendingPathComponent("5.dcm"), to: straggler)
        let modified = try CommandRunner.run("/usr/bin/dcmodify", ["-nb", "-m", "(0008,0018)=2.25.2026120201", straggler.path])
        #expect(modified.status == 0, "\(modified.stderr)")
        try Self.deliver(straggler, to: watch.incoming.appendingPathComponent("late/straggler.dcm"))
        #expect(try watch.waitUntil { try watch.statuses().contains("HELD") })
        // A re-delivery of an instance already processed: a duplicate, not processed again.
        try Self.deliver(Self.series.appendingPathComponent("7.dcm"), to: watch.incoming.appendingPathComponent("again.dcm"))
        #expect(try watch.waitUntil { try watch.statuses().contains("DUPLICATE") && watch.pending() == 0 })
        // The straggler's sub-folder, emptied by its claim, is removed once it has been quiet.
        #expect(watch.waitUntil(20) { !FileManager.default.fileExists(atPath: watch.incoming.appendingPathComponent("late").path) })
        watch.stop()
        #expect(try watch.statuses() == ["DUPLICATE", "FAILED", "HELD", "SUCCEEDED"])
        let held = try #require(try watch.cases().first { $0["status"] as? String == "HELD" })
        #expect((held["error"] as? String)?.hasPrefix("LATE_INSTANCE") == true)
        #expect((held["error"] as? String)?.contains(succeeded) == true)
        #expect(watch.reasons("held").count == 1)
        let status = try CommandRunner.nnseg(["status", "--incoming", watch.incoming.path])
        #expect(status.stdout.contains("held late instances (1)") && status.stdout.contains("LATE_INSTANCE"))
        #expect(try CommandRunner.nnseg(["audit", "verify", "--database", watch.database.path]).status == 0)
    }

    @Test(.timeLimit(.minutes(3)))
    func linksInTheIncomingFolderAreResolvedOrQuarantinedWithAReason() throws {
        let watch = try Harness("watch-links", quietPeriod: 1)
        let fm = FileManager.default
        // Links to files (resolved: the case holds copies; the targets stay where they are), a broken link,
        // and a link to a folder (quarantined with their reasons). Nothing is ignored.
        let study = watch.incoming.appendingPathComponent("study")
        try fm.createDirectory(at: study, withIntermediateDirectories: true)
        for file in Self.seriesFiles { try fm.createSymbolicLink(at: study.appendingPathComponent(file.lastPathComponent), withDestinationURL: file) }
        try fm.createSymbolicLink(atPath: watch.incoming.appendingPathComponent("broken.dcm").path, withDestinationPath: "/nonexistent/file.dcm")
        try fm.createDirectory(at: watch.dir.appendingPathComponent("src"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(at: watch.incoming.appendingPathComponent("linked-folder"), withDestinationURL: watch.dir.appendingPathComponent("src"))
        #expect(try watch.waitForCases(3))
        watch.stop()
        #expect(try watch.statuses() == ["QUARANTINED", "QUARANTINED", "SUCCEEDED"])
        let reasons = watch.reasons("quarantine")
        #expect(reasons.contains { $0.hasPrefix("BROKEN_SYMLINK") } && reasons.contains { $0.hasPrefix("LINKED_FOLDER") }, "\(reasons)")
        #expect(Self.seriesFiles.count == 32, "the link targets are untouched")
    }

    /// DCMTK's storescu sending the demo series to DCMTK's storescp on a loopback port, one association per
    /// file with a pause between: flat, and with `--sort-on-study-uid` (a folder per study).
    @Test(.timeLimit(.minutes(4)), arguments: [false, true])
    func storescuToStorescpIsOneCase(sortOnStudy: Bool) throws {
        let watch = try Harness("watch-storescp", quietPeriod: 1.5)
        let port = try Self.freeLoopbackPort()
        let scp = Process()
        scp.executableURL = URL(fileURLWithPath: "/usr/bin/storescp")
        scp.arguments = (sortOnStudy ? ["--sort-on-study-uid", "study"] : []) + ["--output-directory", watch.incoming.path, "--aetitle", "NNSEG", "\(port)"]
        scp.standardOutput = FileHandle.nullDevice
        scp.standardError = FileHandle.nullDevice
        try scp.run()
        defer { kill(scp.processIdentifier, SIGKILL); scp.waitForExit() }  // storescp does not stop on SIGTERM while listening
        // Wait until storescp answers C-ECHO.
        #expect(try watch.waitUntil(20) { try CommandRunner.run("/usr/bin/echoscu", ["-aec", "NNSEG", "127.0.0.1", "\(port)"]).status == 0 })
        for file in Self.seriesFiles {
            let sent = try CommandRunner.run("/usr/bin/storescu", ["-aec", "NNSEG", "127.0.0.1", "\(port)", file.path])
            #expect(sent.status == 0, "\(sent.stderr)")
            usleep(100_000)
        }
        #expect(try watch.waitForCases(1))
        usleep(UInt32(watch.quietPeriod * 1.5 * 1e6))
        #expect(try watch.statuses() == ["SUCCEEDED"])
        #expect(watch.reasons("quarantine").isEmpty)
        if sortOnStudy {
            // storescp's study folder, emptied by the claim, is removed once it has been quiet.
            #expect(watch.waitUntil(20) { ((try? FileManager.default.contentsOfDirectory(atPath: watch.incoming.path)) ?? []) == [".nnseg"] })
        }
        watch.stop()
    }

    /// A copy of the demo series as its own series (new Series and SOP Instance UIDs).
    static func copySeries(to folder: URL, uid: String) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (k, file) in seriesFiles.enumerated() {
            let target = folder.appendingPathComponent(file.lastPathComponent)
            try FileManager.default.copyItem(at: file, to: target)
            let result = try CommandRunner.run("/usr/bin/dcmodify", ["-nb", "-m", "(0020,000e)=\(uid)", "-m", "(0008,0018)=\(uid).\(k + 1)", target.path])
            #expect(result.status == 0, "\(result.stderr)")
        }
    }

    /// Issue #14: a poison series whose case worker aborts is retried, then quarantined as CRASHED; a file whose
    /// header reading aborts the reader is quarantined on its own as CRASHED; the series before and after them, a
    /// truncated file and a non-DICOM file are handled as usual; the supervisor's pid never changes.
    @Test(.timeLimit(.minutes(4)))
    func aPoisonSeriesNeverStopsTheQueue() throws {
        let poison = "2.25.2026120214"
        let watch = try Harness("watch-poison", quietPeriod: 1, extraArguments: ["--max-attempts", "2"],
                                environment: ["NNSEG_TEST_ABORT_SERIES": poison, "NNSEG_TEST_ABORT_FILE": "poison-header.dcm"])
        let supervisor = try #require(watch.process?.processIdentifier)
        let src = watch.dir.appendingPathComponent("src")
        try Self.copySeries(to: src.appendingPathComponent("good1"), uid: "2.25.2026120211")
        try Self.copySeries(to: src.appendingPathComponent("poison"), uid: poison)
        try Self.copySeries(to: src.appendingPathComponent("good2"), uid: "2.25.2026120212")
        func deliver(_ name: String) throws {
            for file in try FileManager.default.contentsOfDirectory(atPath: src.appendingPathComponent(name).path) {
                try Self.deliver(src.appendingPathComponent("\(name)/\(file)"), to: watch.incoming.appendingPathComponent("\(name)/\(file)"))
            }
        }
        try deliver("good1")
        #expect(try watch.waitForCases(1))
        try deliver("poison")
        let whole = try Data(contentsOf: Self.seriesFiles[0])
        try whole.prefix(700).write(to: watch.incoming.appendingPathComponent("cut.dcm"))
        try Data("not an image".utf8).write(to: watch.incoming.appendingPathComponent("notes.txt"))
        // A file whose header reading kills the reader (test trigger): named CRASHED on its own, nothing else affected.
        try Self.deliver(src.appendingPathComponent("good1/1.dcm"), to: watch.incoming.appendingPathComponent("poison-header.dcm"))
        try deliver("good2")
        #expect(try watch.waitForCases(6))
        #expect(watch.process?.isRunning == true && watch.process?.processIdentifier == supervisor, "the supervisor survived")
        watch.stop()
        let cases = try watch.cases()
        let bySeries = Dictionary(grouping: cases, by: { $0["series_uid"] as? String ?? "" })
        #expect(bySeries["2.25.2026120211"]?.compactMap { $0["status"] as? String } == ["SUCCEEDED"])
        #expect(bySeries["2.25.2026120212"]?.compactMap { $0["status"] as? String } == ["SUCCEEDED"])
        let poisoned = try #require(bySeries[poison]?.first)
        #expect(poisoned["status"] as? String == "QUARANTINED")
        #expect((poisoned["error"] as? String)?.hasPrefix("CRASHED: the worker was killed by SIGABRT") == true, "\(poisoned)")
        #expect((poisoned["error"] as? String)?.contains("(2 attempt(s))") == true)
        let reasons = watch.reasons("quarantine")
        #expect(reasons.contains { $0.hasPrefix("CRASHED") } && reasons.contains { $0.hasPrefix("TRUNCATED") } && reasons.contains { $0.hasPrefix("NOT_DICOM") },
                "\(reasons)")
        #expect(reasons.contains { $0.hasPrefix("CRASHED: poison-header.dcm: reading this file's header killed the header reader") }, "\(reasons)")
        let failures = try CommandRunner.nnseg(["audit", "show", poisoned["case_id"] as! String, "--database", watch.database.path])
        #expect(failures.stdout.components(separatedBy: "worker_failed").count - 1 == 2)
        #expect(failures.stdout.contains(#""worker_limits":{"time_limit_s":3600}"#), "the limits the case ran under are recorded")
        #expect(try CommandRunner.nnseg(["audit", "verify", "--database", watch.database.path]).status == 0)
    }

    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw CocoaError(.fileReadUnknown) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
