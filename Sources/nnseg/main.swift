import ArgumentParser
import Foundation

// Every command ends through here, so that exit statuses and error reports are the same everywhere
// (README, "Exit codes"): text on stderr, or JSON on stdout when the command was given --json.
do {
    var command = try NNSeg.parseAsRoot()
    try command.run()
} catch {
    guard let failure = CommandOutcome(error) else { NNSeg.exit(withError: error) }  // usage, help, version, ExitCode
    failure.report(asJSON: CommandLine.arguments.dropFirst().contains("--json"))
    exit(failure.status.rawValue)
}
