import ArgumentParser
import BatchPipeline
import Foundation
import SiteProfile

/// `nnseg profile init`: a commented starting profile for a model folder.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "profile", abstract: "Site profiles.", subcommands: [Init.self])

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a commented starting profile for a model folder.",
            discussion: "Structures are named from the model's dataset.json (TG-263 names, SNOMED CT codes and distinct colours where the name is known). The file is checked by loading it before it is kept.")

        @Option(help: "nnU-Net model folder (dataset.json, plans.json, fold_N/).")
        var model: String

        @Option(help: "Profile file to write (default: standard output).")
        var output: String?

        @Flag(help: "Replace an existing output file.")
        var force = false

        func run() throws {
            let folder = URL(fileURLWithPath: model).standardizedFileURL
            guard let output else {
                print(try CaseProfile.starterText(modelFolder: folder, folderReference: folder.path), terminator: "")
                return
            }
            let target = URL(fileURLWithPath: output).standardizedFileURL
            guard force || !FileManager.default.fileExists(atPath: target.path) else {
                throw ValidationError("\(output) exists (--force replaces it)")
            }
            let reference = Self.relativePath(of: folder, from: target.deletingLastPathComponent())
            let text = try CaseProfile.starterText(modelFolder: folder, folderReference: reference)
            let staging = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).partial")
            try text.write(to: staging, atomically: false, encoding: .utf8)
            do { _ = try CaseProfile(contentsOf: staging) } catch {
                try? FileManager.default.removeItem(at: staging)
                throw error
            }
            if FileManager.default.fileExists(atPath: target.path) { try FileManager.default.removeItem(at: target) }
            try FileManager.default.moveItem(at: staging, to: target)
            print("profile   \(output): model \(reference)")
        }

        /// `folder` relative to `base` when they share a root below /, else absolute.
        static func relativePath(of folder: URL, from base: URL) -> String {
            let a = folder.pathComponents, b = base.pathComponents
            var common = 0
            while common < min(a.count, b.count) && a[common] == b[common] { common += 1 }
            guard common > 1 else { return folder.path }
            return (Array(repeating: "..", count: b.count - common) + a[common...]).joined(separator: "/")
        }
    }
}
