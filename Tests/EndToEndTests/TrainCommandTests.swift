import Foundation
import Testing
import TestSupport
import TorchCheckpoint
import WatchService

/// `nnseg train` on real Hippocampus cases: killed with SIGKILL after its first epoch checkpoint, resumed
/// with `--continue`, it finishes with the same poly learning-rate schedule as an uninterrupted run,
/// writes nnU-Net's fold layout and validates the fold into summary.json.
struct TrainCommandTests {
    static let cases = [1, 3, 4, 6, 7, 8, 11, 14, 15, 17, 19, 20].map { String(format: "hippocampus_%03d", $0) }

    @Test func killedRunResumesWithTheSameScheduleAndValidates() throws {
        let raw = try SharedData.hippocampusSubset(Self.cases)
        let work = raw.deletingLastPathComponent()
        let pre = work.appendingPathComponent("pre"), results = work.appendingPathComponent("results")
        #expect(try CommandRunner.nnseg(["plan", "-d", raw.path, "--output", pre.path]).status == 0)
        #expect(try CommandRunner.nnseg(["preprocess", "-d", raw.path, "--output", pre.path, "-c", "3d_fullres"]).status == 0)
        let arguments = ["train", "-d", raw.path, "--output", pre.path, "--results", results.path, "-c", "3d_fullres", "-f", "0",
                         "--epochs", "3", "--iterations", "2", "--validation-iterations", "1", "--seed", "7"]
        let fold = results.appendingPathComponent("Dataset004_Hippocampus/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0")
        let latest = fold.appendingPathComponent("checkpoint_latest.pth")

        // First run: SIGKILL as soon as the first epoch's checkpoint is in place.
        let process = try CommandRunner.launch(arguments)
        let deadline = Date().addingTimeInterval(600)
        while !FileManager.default.fileExists(atPath: latest.path) && process.isRunning && Date() < deadline { usleep(100_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitForExit()
        #expect(process.terminationReason == .uncaughtSignal, "the run finished before it could be killed")
        let interrupted = try TorchCheckpoint(contentsOf: latest)
        let epochsDone = Int(try #require(interrupted.root["current_epoch"]?.intValue))
        #expect(epochsDone >= 1 && epochsDone < 3)
        #expect(!FileManager.default.fileExists(atPath: fold.appendingPathComponent("checkpoint_final.pth").path))
        // No half-written checkpoint is left under a final name.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: fold.path).filter { $0.hasSuffix(".pth") }
        for name in leftovers { _ = try TorchCheckpoint(contentsOf: fold.appendingPathComponent(name)) }

        // Starting again without --continue is refused only once the fold is finished; --continue resumes.
        let resumed = try CommandRunner.nnseg(arguments + ["--continue"])
        #expect(resumed.status == 0, "\(resumed.stderr.suffix(2000))")
        #expect(resumed.stderr.contains("resuming"))
        let final = try TorchCheckpoint(contentsOf: fold.appendingPathComponent("checkpoint_final.pth"))
        #expect(final.root["current_epoch"]?.intValue == 3)
        let lrValues = final.root["logging"]?["lrs"]?.elements ?? []
        let lrs = lrValues.compactMap(\.doubleValue)
        let expected = (0..<3).map { 0.01 * pow(1 - Double($0) / 3, 0.9) }
        let sameSchedule = lrs.count == 3 && zip(lrs, expected).allSatisfy { abs($0 - $1) < 1e-12 }
        #expect(sameSchedule, "\(lrs) vs \(expected)")
        #expect(final.root["trainer_name"]?.stringValue == "nnUNetTrainer")
        #expect(!FileManager.default.fileExists(atPath: latest.path), "checkpoint_latest.pth is removed at the end")
        for file in ["checkpoint_best.pth", "progress.png", "validation/summary.json"] {
            #expect(FileManager.default.fileExists(atPath: fold.appendingPathComponent(file).path), "\(file) missing")
        }
        let summary = try #require(try SharedData.json(fold.appendingPathComponent("validation/summary.json")) as? [String: Any])
        let perCase = try #require(summary["metric_per_case"] as? [[String: Any]])
        let splits = try #require(try SharedData.json(pre.appendingPathComponent("Dataset004_Hippocampus/splits_final.json")) as? [[String: [String]]])
        #expect(perCase.count == splits[0]["val"]!.count)
        #expect((summary["mean"] as? [String: Any])?.keys.sorted() == ["1", "2"])
        #expect(resumed.stdout.contains("validation: mean foreground Dice"))
        // The cross-validation merge of this fold reproduces its per-case metrics.
        let merged = try CommandRunner.nnseg(["crossval", "-d", raw.path, "--output", pre.path, "--results", results.path, "-f", "0"])
        #expect(merged.status == 0, "\(merged.stderr.suffix(1000))")
        let crossval = fold.deletingLastPathComponent().appendingPathComponent("crossval_results_folds_0")
        let mergedSummary = try #require(try SharedData.json(crossval.appendingPathComponent("summary.json")) as? [String: Any])
        let mergedMean = try #require(mergedSummary["foreground_mean"] as? [String: Any])
        let foldMean = try #require(summary["foreground_mean"] as? [String: Any])
        #expect((mergedMean["Dice"] as? Double) == (foldMean["Dice"] as? Double))
        #expect(FileManager.default.fileExists(atPath: crossval.appendingPathComponent("plans.json").path))
        let missing = try CommandRunner.nnseg(["crossval", "-d", raw.path, "--output", pre.path, "--results", results.path, "-f", "0", "1"])
        #expect(missing.status != 0 && missing.stderr.contains("fold 1 has no finished validation"))
        // A finished fold is not overwritten by accident.
        let again = try CommandRunner.nnseg(arguments)
        #expect(again.status != 0 && again.stderr.contains("already trained"))
        try? FileManager.default.removeItem(at: work)
    }
}
