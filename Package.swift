// swift-tools-version:6.1
//
// nnseg — nnU-Net rebuilt in Swift as a DICOM-native clinical batch processor.
//
// Module map: Ops/layers.txt (imports point down; which modules may use each C library). Ops/check_layers.sh
// checks every target's imports against it and against the dependencies declared here; CI runs it.
import PackageDescription

let package = Package(
    name: "nnseg",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nnseg", targets: ["nnseg"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // SHA-256, HMAC-SHA256 and Ed25519 (#18): a maintained library instead of hand-written hashing.
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        // PostgreSQL for several nodes sharing one queue and one audit log (#19).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        // The operators' and auditors' console and the metrics endpoint (#20): HTTP server, bcrypt accounts, Prometheus text.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
    ],
    targets: [
        // MARK: L0 — system libraries (Debian packages installed by Ops/setup.sh)
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .systemLibrary(name: "COpenJPEG", path: "Sources/COpenJPEG"),
        .systemLibrary(name: "CLibz", path: "Sources/CLibz"),
        // DCMTK behind a plain C API (no Swift C++ interop anywhere).
        .target(
            name: "CDCMTK",
            dependencies: ["COpenJPEG"],
            path: "Sources/CDCMTK",
            cxxSettings: [.define("NNSEG_DCMTK_SHIM")],
            linkerSettings: [
                .linkedLibrary("dcmjpls"), .linkedLibrary("dcmtkcharls"),
                .linkedLibrary("dcmjpeg"), .linkedLibrary("ijg8"), .linkedLibrary("ijg12"), .linkedLibrary("ijg16"),
                .linkedLibrary("dcmimgle"), .linkedLibrary("dcmdata"), .linkedLibrary("oflog"), .linkedLibrary("ofstd"),
                .linkedLibrary("openjp2"), .linkedLibrary("z"),
            ]
        ),
        // DCMTK's network layer (dcmnet) behind a plain C API: the storage SCP of `nnseg serve`.
        .target(
            name: "CDCMTKNet",
            path: "Sources/CDCMTKNet",
            linkerSettings: [
                .linkedLibrary("dcmtls"), .linkedLibrary("dcmnet"), .linkedLibrary("dcmdata"), .linkedLibrary("oflog"), .linkedLibrary("ofstd"), .linkedLibrary("z"),
            ]
        ),

        // MARK: L1
        .target(name: "VolumeGeometry"),
        // Kernels are always optimised (also in debug builds) so tests and benchmarks run at speed.
        .target(name: "TensorKernels", dependencies: ["CDNNL"], swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(name: "PlansModel", dependencies: ["JSON"]),
        // The one JSON value type (plans, audit payloads, nnU-Net-layout files).
        .target(name: "JSON"),
        // Series assembly and the late-instance rule for every intake (watch folder, network node): pure logic.
        .target(name: "SeriesAssembly"),
        // The software version, case IDs and case statuses: one definition each.
        .target(name: "CaseIdentity"),
        // Strict decoding of configuration files (unknown keys refused at every level, with the key path).
        .target(name: "ConfigDecoding"),
        .target(name: "Contours", swiftSettings: [.unsafeFlags(["-O"])]),
        // Hashes, keyed pseudonyms and signatures over swift-crypto; the project's key files.
        .target(name: "Digest", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Parallel"),
        // A blocking PostgreSQL session over postgres-nio (the shared audit log and job queue of #19).
        .target(name: "PostgresDB", dependencies: [.product(name: "PostgresNIO", package: "postgres-nio"),
                                                   .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                                                   .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                                   .product(name: "Logging", package: "swift-log")]),
        .target(name: "TorchCheckpoint", dependencies: [.product(name: "ZIPFoundation", package: "ZIPFoundation")]),

        // MARK: L2
        .target(name: "Resampling", swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        .target(name: "NIfTI", dependencies: ["VolumeGeometry", "CLibz"]),
        .target(name: "QASnapshot", dependencies: ["VolumeGeometry", "CLibz"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "AuditLog", dependencies: ["Digest", "CaseIdentity", "JSON", "PostgresDB", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "DICOMExport", dependencies: ["VolumeGeometry", "Contours", "Digest", "Parallel", "CDCMTK"], swiftSettings: [.unsafeFlags(["-O"])]),
        .target(name: "DICOMNetwork", dependencies: ["CDCMTKNet"]),
        // The shared job queue of several nodes (PostgreSQL; leases, SKIP LOCKED claims) — #19.
        .target(name: "JobQueue", dependencies: ["PostgresDB"]),
        .target(name: "DICOMImport", dependencies: [
            "VolumeGeometry", "CDCMTK", "Contours",
            .product(name: "Logging", package: "swift-log"),
        ]),

        .target(name: "UNet", dependencies: ["TensorKernels", "PlansModel", "TorchCheckpoint"]),

        // MARK: L3
        .target(name: "Preprocessing", dependencies: ["Resampling", "PlansModel", "VolumeGeometry", "JSON"], swiftSettings: [.unsafeFlags(["-O"])]),

        // L4 in the map (it builds on Preprocessing)
        .target(name: "ExperimentPlanning", dependencies: ["Preprocessing", "PlansModel", "JSON", "NIfTI", "Resampling", "DICOMImport", "VolumeGeometry"],
                swiftSettings: [.unsafeFlags(["-O"]), .swiftLanguageMode(.v5)]),

        // MARK: L4
        .target(name: "Inference", dependencies: ["UNet", "Preprocessing", "Resampling", "PlansModel", "TensorKernels", "JSON", "Parallel",
                                                  .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.unsafeFlags(["-O"])]),

        // L6 in the map (it validates with the case layer's reader and writer and Inference's predictor)
        .target(name: "Training", dependencies: ["UNet", "TensorKernels", "PlansModel", "ExperimentPlanning", "Inference", "CaseLayer", "NIfTI",
                                                 "TorchCheckpoint", "Preprocessing", "Resampling", "VolumeGeometry", "QASnapshot",
                                                 .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),

        // Model bundles (#21): nnU-Net's export zip plus a manifest of SHA-256s and an optional Ed25519 signature; the models folder.
        .target(name: "ModelSharing", dependencies: ["Digest", "PlansModel", "TorchCheckpoint", "CaseIdentity",
                                                     .product(name: "ZIPFoundation", package: "ZIPFoundation")]),

        // The site profile (strictly decoded YAML): below the pipeline, so that its fuzz target needs no database client.
        .target(name: "SiteProfile", dependencies: ["DICOMExport", "DICOMImport", "DICOMNetwork", "Digest", "PlansModel", "ConfigDecoding", "ModelSharing",
                                                    .product(name: "Yams", package: "Yams")]),

        // MARK: L5 — the case layer: one ensemble/predict path and one output sequence for every command
        .target(name: "CaseLayer", dependencies: ["Inference", "Preprocessing", "DICOMExport", "DICOMImport", "Parallel", "NIfTI", "QASnapshot", "VolumeGeometry",
                                                  .product(name: "ZIPFoundation", package: "ZIPFoundation")]),

        // MARK: L6
        .target(name: "BatchPipeline", dependencies: ["CaseLayer", "SiteProfile", "Contours", "DICOMNetwork", "DICOMImport", "DICOMExport", "Inference", "VolumeGeometry", "Digest", "AuditLog", "PlansModel",
                                                      "NIfTI", "Preprocessing", "ConfigDecoding", "CaseIdentity", "JSON", "TensorKernels",
                                                      .product(name: "Yams", package: "Yams")]),

        // MARK: L7
        .target(name: "Outbox", dependencies: ["DICOMNetwork", "PostgresDB", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(name: "WatchService", dependencies: ["AuditLog", "JobQueue", "Outbox", "DICOMNetwork", "DICOMImport", "SeriesAssembly", "CaseIdentity", "JSON", .product(name: "Logging", package: "swift-log")]),

        // The console (#20): health, metrics and the JSON API over the audit log, queue and outbox.
        .target(name: "Console", dependencies: ["AuditLog", "Digest", "Outbox", "JobQueue", "PostgresDB", "ConfigDecoding", "JSON",
                                                .product(name: "Hummingbird", package: "hummingbird"),
                                                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                                                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                                                .product(name: "Prometheus", package: "swift-prometheus"),
                                                .product(name: "NIOCore", package: "swift-nio"),
                                                .product(name: "Yams", package: "Yams"),
                                                .product(name: "Logging", package: "swift-log")]),

        // MARK: L8 — CLI
        .executableTarget(name: "nnseg", dependencies: [
            "VolumeGeometry", "NIfTI", "DICOMImport", "DICOMExport", "DICOMNetwork", "BatchPipeline", "Inference", "Preprocessing", "AuditLog", "WatchService", "ExperimentPlanning", "Training", "TensorKernels", "PlansModel", "Digest", "CaseIdentity", "CaseLayer", "ConfigDecoding", "Outbox", "UNet", "JobQueue", "PostgresDB", "SiteProfile", "Console", "ModelSharing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // MARK: Fuzz targets (libFuzzer; Ops/fuzz/run.sh builds them with -sanitize=fuzzer,address -DFUZZING;
        // a plain build makes corpus replayers)
        .target(name: "FuzzSupport"),
        .executableTarget(name: "FuzzDICOM", dependencies: ["DICOMImport", "FuzzSupport"]),
        .executableTarget(name: "FuzzGeometry", dependencies: ["DICOMImport", "VolumeGeometry", "FuzzSupport"]),
        .executableTarget(name: "FuzzNIfTI", dependencies: ["NIfTI", "FuzzSupport"]),
        .executableTarget(name: "FuzzCheckpoint", dependencies: ["TorchCheckpoint", "FuzzSupport"]),
        .executableTarget(name: "FuzzPlans", dependencies: ["PlansModel", "FuzzSupport"]),
        .executableTarget(name: "FuzzProfile", dependencies: ["SiteProfile", "FuzzSupport"]),

        // MARK: Benchmarks (run by Ops/bench/*.sh, never by the tests)
        // The roofline's ceiling: a measured FMA peak (C with per-function target attributes; the benchmark only).
        .target(name: "CPUPeak", cSettings: [.unsafeFlags(["-O2"])]),
        .executableTarget(name: "NetworkBenchmark", dependencies: ["UNet", "TensorKernels", "PlansModel", "CPUPeak"]),
        .executableTarget(name: "AuditBenchmark", dependencies: ["AuditLog", "CaseIdentity", "Digest"]),
        .executableTarget(name: "TrainingBenchmark", dependencies: ["Training", "ExperimentPlanning", "TensorKernels", "PlansModel", "TorchCheckpoint", "UNet", "CPUPeak"]),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["Digest", "AuditLog", .product(name: "ZIPFoundation", package: "ZIPFoundation")], path: "Tests/TestSupport",
                swiftSettings: [.unsafeFlags(["-O"])]),
        .testTarget(name: "VolumeGeometryTests", dependencies: ["VolumeGeometry", "TestSupport"]),
        .testTarget(name: "NIfTITests", dependencies: ["NIfTI", "VolumeGeometry", "Digest", "TestSupport"]),
        .testTarget(name: "DICOMImportTests", dependencies: ["DICOMImport", "NIfTI", "VolumeGeometry", "Digest", "TestSupport"]),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CDNNL", "COpenJPEG", "CDCMTK"]),
        .testTarget(name: "TorchCheckpointTests", dependencies: ["TorchCheckpoint", "Digest", "TestSupport",
                                                                 .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .testTarget(name: "TensorKernelsTests", dependencies: ["TensorKernels", "TestSupport"]),
        .testTarget(name: "UNetTests", dependencies: ["UNet", "TensorKernels", "PlansModel", "TestSupport"]),
        .testTarget(name: "ResamplingTests", dependencies: ["Resampling", "DICOMImport", "TestSupport"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "Preprocessing", "Resampling", "PlansModel", "UNet", "TensorKernels", "NIfTI", "VolumeGeometry", "TestSupport"]),
        .testTarget(name: "ContoursTests", dependencies: ["Contours"]),
        .testTarget(name: "DICOMExportTests", dependencies: ["DICOMExport", "DICOMImport", "BatchPipeline", "NIfTI", "Contours", "VolumeGeometry", "TestSupport"]),
        .testTarget(name: "AuditLogTests", dependencies: ["AuditLog", "JobQueue", "CaseIdentity", "Digest", "TestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "BatchPipelineTests", dependencies: ["BatchPipeline", "SiteProfile", "ModelSharing", "AuditLog", "DICOMImport", "DICOMExport", "NIfTI", "JSON", "TestSupport"]),
        .testTarget(name: "SeriesAssemblyTests", dependencies: ["SeriesAssembly"]),
        .testTarget(name: "PlansModelTests", dependencies: ["PlansModel"]),
        .testTarget(name: "ModelSharingTests", dependencies: ["ModelSharing", "Digest", "TestSupport", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .testTarget(name: "ConfigDecodingTests", dependencies: ["ConfigDecoding", .product(name: "Yams", package: "Yams")]),
        .testTarget(name: "ExperimentPlanningTests", dependencies: ["ExperimentPlanning", "PlansModel", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TensorKernels", "UNet", "PlansModel", "ExperimentPlanning", "Inference", "NIfTI", "VolumeGeometry", "TestSupport", "CaseLayer", "Digest"]),
        .testTarget(name: "EndToEndTests", dependencies: ["TestSupport", "nnseg", "SiteProfile", "NIfTI", "DICOMImport", "DICOMExport", "BatchPipeline", "VolumeGeometry", "QASnapshot",
                                                      "CaseLayer", "CaseIdentity", "WatchService", "Outbox", "AuditLog", "DICOMNetwork", "TorchCheckpoint", "JobQueue", "Console", "TensorKernels", "ModelSharing", "Inference"]),
    ],
    cxxLanguageStandard: .cxx17
)
