// Audit query benchmark (issue #6): 100,000 synthetic cases, then the queries `nnseg audit list` runs.
//
//   swift run -c release AuditBenchmark        (or: bash Ops/bench/audit_queries.sh)
//
// Goal: every query answers in under 100 ms. Prints each query's median time and the ratio goal ÷ measured.
// Issue #18: the 100,000 cases are signed (Ed25519 seal per case); what signing adds per case when cases close one
// at a time (goal < 5 ms, measured against the same log without a key), and how long verifying every signature takes.
import AuditLog
import CaseIdentity
import Digest
import Foundation

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nnseg-audit-bench-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }
let signingPath = directory.appendingPathComponent("signing.key").path
let signing = try SigningKey.create(at: signingPath, publicKeyAt: signingPath + ".pub")
let log = try AuditLog(path: directory.appendingPathComponent("audit.sqlite").path, keys: AuditKeys(signing: signing))
let models = ["Dataset004_Hippocampus", "TotalSegmentator", "Prostate", "Liver"]
let statuses: [CaseStatus] = [.succeeded, .succeeded, .succeeded, .failed, .emptyResult]
let start = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01
var summaries: [AuditLog.CaseSummary] = []
for i in 0..<100_000 {
    let started = start.addingTimeInterval(Double(i) * 300)
    summaries.append(.init(caseID: String(format: "case-%06d", i), startedAt: started, finishedAt: started.addingTimeInterval(42),
                           status: statuses[i % statuses.count], model: models[i % models.count],
                           seriesInstanceUID: "1.2.826.0.1.3680043.\(i)", profile: "profile-\(i % 3)",
                           error: i % statuses.count == 3 ? "READ_FAILED: synthetic" : nil))
}
let insertStart = Date()
for chunk in stride(from: 0, to: summaries.count, by: 10_000) { try log.finish(Array(summaries[chunk..<min(chunk + 10_000, summaries.count)])) }
print(String(format: "inserted 100,000 cases in %.1f s", Date().timeIntervalSince(insertStart)))

func median(_ body: () throws -> Int) rethrows -> (Double, Int) {
    var times: [Double] = []
    var count = 0
    for _ in 0..<7 {
        let t = Date()
        count = try body()
        times.append(Date().timeIntervalSince(t) * 1000)
    }
    return (times.sorted()[3], count)
}

let day = start.addingTimeInterval(180 * 86_400)
let queries: [(String, AuditLog.Filter)] = [
    ("newest 50", .init(limit: 50)),
    ("one day (date range)", .init(since: day, until: day.addingTimeInterval(86_400))),
    ("failed cases, newest 100", .init(status: CaseStatus.failed.rawValue, limit: 100)),
    ("one model, one week", .init(since: day, until: day.addingTimeInterval(7 * 86_400), model: "TotalSegmentator")),
    ("by series UID", .init(seriesInstanceUID: "1.2.826.0.1.3680043.54321")),
]
print("query                          rows   median [ms]   goal 100 ms ÷ measured")
for (name, filter) in queries {
    let (ms, rows) = try median { try log.cases(filter).count }
    print(name.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: " %6d %13.2f %12.1f×", rows, ms, 100 / ms))
}
let (verifyMs, _) = try median {
    if case .intact(let n) = try log.verify() { return n }
    return -1
}
print(String(format: "verify (100,000 chained events): %.0f ms", verifyMs))

// Signing: cases closed one at a time (as the pipeline does: three events and a summary per case), on a signed and
// an unsigned log, alternating rounds; the difference per case is what signing adds.
let publicKey = try VerifyingKey(contentsOf: signingPath + ".pub")
let (signedVerifyMs, _) = try median {
    let report = try log.verify(AuditEvidence(publicKey: publicKey))
    return report.intact ? report.sealedCases : -1
}
print(String(format: "verify with the public key (100,000 signed cases, every signature): %.0f ms", signedVerifyMs))
let plain = try AuditLog(path: directory.appendingPathComponent("plain.sqlite").path)
let signed = try AuditLog(path: directory.appendingPathComponent("signed.sqlite").path, keys: AuditKeys(signing: signing))
func closeCases(_ target: AuditLog, _ round: Int, _ n: Int) throws -> Double {
    let t = Date()
    for i in 0..<n {
        let id = "r\(round)-\(i)"
        try target.append(caseID: id, kind: "case_started", payload: ["profile": .string("p")])
        try target.append(caseID: id, kind: "stage_timings", payload: ["predict": .double(1.5)])
        try target.finish(caseID: id, startedAt: t, status: .succeeded, model: "m", seriesInstanceUID: "1.2.\(i)", profile: "p", error: nil)
    }
    return Date().timeIntervalSince(t) * 1000 / Double(n)
}
var plainTimes: [Double] = [], signedTimes: [Double] = []
for round in 0..<5 {
    plainTimes.append(try closeCases(plain, round, 200))
    signedTimes.append(try closeCases(signed, round, 200))
}
let plainMs = plainTimes.sorted()[2], signedMs = signedTimes.sorted()[2]
print(String(format: "closing a case: %.3f ms unsigned, %.3f ms signed → signing adds %.3f ms per case (goal < 5 ms: %.0f× under)",
             plainMs, signedMs, signedMs - plainMs, 5 / max(signedMs - plainMs, 0.001)))
