import Foundation
import Testing
import TestSupport

/// Ops/check_layers.sh (issue #13) on fixtures: a clean map passes; an import pointing up, a sideways one, an
/// undeclared one and a C library used past its owner each fail, named with file and line. (CI also runs the
/// script on the real tree, in Ops/test.sh.)
struct LayerCheckTests {
    /// A fixture package: `Sources/<module>/<module>.swift` with the given imports, the map and dump-package JSON.
    func fixture(_ modules: [(name: String, layer: Int, imports: [String], declared: [String])], only: [String: [String]] = [:]) throws -> URL {
        let root = try SharedData.temporaryDirectory("layers")
        var map = ""
        var targets: [[String: Any]] = []
        for m in modules {
            let folder = root.appendingPathComponent("Sources/\(m.name)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data((m.imports.map { "import \($0)" } + ["import Foundation", "", "let x = 1"]).joined(separator: "\n").utf8)
                .write(to: folder.appendingPathComponent("\(m.name).swift"))
            map += "\(m.layer) \(m.name)" + (only[m.name].map { " only: " + $0.joined(separator: " ") } ?? "") + "\n"
            targets.append(["name": m.name, "type": "regular", "dependencies": m.declared.map { ["byName": [$0, NSNull()]] }])
        }
        try Data(map.utf8).write(to: root.appendingPathComponent("layers.txt"))
        try JSONSerialization.data(withJSONObject: ["targets": targets]).write(to: root.appendingPathComponent("package.json"))
        return root
    }

    func check(_ root: URL) throws -> CommandRunner.Result {
        try CommandRunner.run("/bin/bash", [SharedData.repositoryRoot.appendingPathComponent("Ops/check_layers.sh").path,
                                            "--map", root.appendingPathComponent("layers.txt").path,
                                            "--sources", root.appendingPathComponent("Sources").path,
                                            "--package-json", root.appendingPathComponent("package.json").path])
    }

    @Test func aCleanMapPasses() throws {
        let root = try fixture([("CLib", 0, [], []), ("Kernels", 1, ["CLib"], ["CLib"]), ("Reader", 2, ["Kernels"], ["Kernels"]),
                                ("Tool", 3, ["Reader", "Kernels"], ["Reader", "Kernels"])], only: ["CLib": ["Kernels"]])
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try check(root)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("4 target(s), 0 violation(s)"))
    }

    @Test func violationsAreNamed() throws {
        let root = try fixture([("CLib", 0, [], []), ("Kernels", 1, ["CLib", "Reader"], ["CLib", "Reader"]),
                                ("Reader", 2, ["CLib", "Writer"], ["CLib", "Writer"]), ("Writer", 2, [], []),
                                ("Tool", 3, ["Reader", "Kernels"], ["Reader"])], only: ["CLib": ["Kernels"]])
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try check(root)
        #expect(result.status == 1)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.contains("Kernels.swift:2: Kernels (L1) imports Reader (L2): points up the module map") }, "\(lines)")
        #expect(lines.contains { $0.contains("Reader.swift:2: Reader (L2) imports Writer (L2): sideways (same layer)") })
        #expect(lines.contains { $0.contains("Reader.swift:1: Reader (L2) imports CLib (L0): only Kernels may import CLib") })
        #expect(lines.contains { $0.contains("Tool.swift:2: Tool (L3) imports Kernels (L1): not declared in Package.swift's dependencies of Tool") })
        #expect(result.stdout.contains("5 target(s), 4 violation(s)"))
    }

    @Test func aTargetMissingFromTheMapFails() throws {
        let root = try fixture([("Kernels", 1, [], [])])
        defer { try? FileManager.default.removeItem(at: root) }
        let json = #"{"targets": [{"name": "Kernels", "type": "regular", "dependencies": []}, {"name": "Extra", "type": "regular", "dependencies": []}]}"#
        try Data(json.utf8).write(to: root.appendingPathComponent("package.json"))
        let result = try check(root)
        #expect(result.status == 1 && result.stdout.contains("Extra: not in the module map"), "\(result.stdout)")
    }
}
