import Foundation

/// Locates test data: `../shared` next to the repository (as CI lays it out) and the repo's `Fixtures/`.
public enum SharedData {
    /// The repository root (the folder holding Package.swift), found from this source file's location.
    public static let repositoryRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    /// `../shared`, or `NNSEG_SHARED` when set (tests only; the product never reads it).
    public static let sharedRoot: URL = {
        if let env = ProcessInfo.processInfo.environment["NNSEG_SHARED"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")
    }()

    public static var data: URL { sharedRoot.appendingPathComponent("data") }
    public static var reference: URL { sharedRoot.appendingPathComponent("reference") }
    public static var fixtures: URL { repositoryRoot.appendingPathComponent("Fixtures") }

    public static func dataFile(_ relative: String) -> URL { data.appendingPathComponent(relative) }

    /// Decoded JSON from a file.
    public static func json(_ url: URL) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url))
    }

    /// schemathesis from the venv Ops/setup.sh --test creates (`.venv-schemathesis`), or nil.
    public static var schemathesis: String? {
        let path = repositoryRoot.appendingPathComponent(".venv-schemathesis/bin/schemathesis").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// The Python with highdicom that Ops/setup.sh --test creates (`.venv-validate`), or
    /// `NNSEG_VALIDATION_PYTHON`.
    public static var validationPython: String? {
        if let env = ProcessInfo.processInfo.environment["NNSEG_VALIDATION_PYTHON"], !env.isEmpty { return env }
        let venv = repositoryRoot.appendingPathComponent(".venv-validate/bin/python").path
        return FileManager.default.fileExists(atPath: venv) ? venv : nil
    }

    /// The Python with dcmqi, pydicom-seg and dcmrtstruct2nii (they need pydicom 2.x) that Ops/setup.sh --test
    /// creates (`.venv-validate-pydicom2`).
    public static var validationPythonPydicom2: String? {
        let venv = repositoryRoot.appendingPathComponent(".venv-validate-pydicom2/bin/python").path
        return FileManager.default.fileExists(atPath: venv) ? venv : nil
    }

    /// A folder for what a test leaves for a person to look at (screenshots): `.build/test-output/<name>/`,
    /// emptied at the start, kept after the run.
    public static func testOutput(_ name: String) throws -> URL {
        let url = repositoryRoot.appendingPathComponent(".build/test-output/\(name)")
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A fresh temporary directory `<tmp>/<name>-<UUID>`. A test may remove it when done; whatever is left is removed
    /// when the test process exits (NNSEG_KEEP_TEST_FILES=1 keeps them all for inspection), so that a run of the suite
    /// leaves nothing behind on the machine.
    public static func temporaryDirectory(_ name: String = "nnseg-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        TemporaryDirectories.shared.add(url)
        return url
    }

    /// A raw dataset folder `<new temporary directory>/<name>` holding the given Hippocampus cases (image,
    /// label) and the dataset's dataset.json with `numTraining` set (default: the number of cases).
    public static func hippocampusSubset(_ identifiers: [String], name: String = "Dataset004_Hippocampus",
                                         numTraining: Int? = nil) throws -> URL {
        let source = dataFile("Dataset004_Hippocampus")
        let raw = try temporaryDirectory(name).appendingPathComponent(name)
        let fm = FileManager.default
        for sub in ["imagesTr", "labelsTr"] { try fm.createDirectory(at: raw.appendingPathComponent(sub), withIntermediateDirectories: true) }
        for id in identifiers {
            try fm.copyItem(at: source.appendingPathComponent("imagesTr/\(id)_0000.nii.gz"), to: raw.appendingPathComponent("imagesTr/\(id)_0000.nii.gz"))
            try fm.copyItem(at: source.appendingPathComponent("labelsTr/\(id).nii.gz"), to: raw.appendingPathComponent("labelsTr/\(id).nii.gz"))
        }
        guard var description = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("dataset.json"))) as? [String: Any] else {
            throw NSError(domain: "SharedData", code: 1, userInfo: [NSLocalizedDescriptionKey: "dataset.json is not an object"])
        }
        description["numTraining"] = numTraining ?? identifiers.count
        try JSONSerialization.data(withJSONObject: description).write(to: raw.appendingPathComponent("dataset.json"))
        return raw
    }
}

extension SharedData {
    /// NNSEG_KEEP_TEST_FILES set (and not 0): temporary folders and nodes' folders are left for inspection.
    public static var keepsTestFiles: Bool {
        ProcessInfo.processInfo.environment["NNSEG_KEEP_TEST_FILES"].map { !$0.isEmpty && $0 != "0" } ?? false
    }
}

/// The temporary directories this test process created, removed at its exit.
final class TemporaryDirectories: @unchecked Sendable {
    static let shared = TemporaryDirectories()
    private let lock = NSLock()
    private var urls: [URL] = []

    private init() {
        if SharedData.keepsTestFiles { return }
        atexit { TemporaryDirectories.shared.removeAll() }
    }

    func add(_ url: URL) { lock.withLock { urls.append(url) } }

    func removeAll() {
        let all = lock.withLock { urls }
        for url in all { try? FileManager.default.removeItem(at: url) }
    }
}
