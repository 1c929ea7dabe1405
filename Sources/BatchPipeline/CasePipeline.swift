import AuditLog
import CaseIdentity
import CaseLayer
import Contours
import DICOMExport
import DICOMImport
import Digest
import Dispatch
import Foundation
import Inference
import TensorKernels
import JSON
import Logging
import Preprocessing
import VolumeGeometry
import SiteProfile

/// The clinical job (issue #6): a DICOM study in, SEG / RTSTRUCT / NIfTI / QA snapshot out, every step
/// on record in the audit log. Composed top to bottom (MONAI Deploy style): select → load → predict →
/// write → record. One instance keeps the model loaded for many cases.
public final class CasePipeline: @unchecked Sendable {
    public let profile: CaseProfile
    public let engine: InferenceEngine
    public let audit: AuditLog
    /// Refuse a delivery whose one series splits into several stacks (watch folders); studies passed
    /// to `nnseg run` may hold several series and the selection rules choose.
    public var requireSingleStack = false
    /// `--new-uids`: fresh output UIDs instead of name-based ones (a re-run then adds objects in PACS).
    public var freshUIDs = false
    let modelFiles: [String: AuditValue]
    /// SHA-256 over the model bundle's files (path and hash, sorted): part of the output UIDs' seed.
    let modelHash: String
    let postprocessing: Postprocessing?
    let ensemble: Ensemble
    let logger: Logger
    public struct Result: Sendable {
        public var caseID: String
        public var caseStatus: CaseStatus
        /// ``caseStatus`` as recorded (its raw value).
        public var status: String { caseStatus.rawValue }
        public var outputFolder: URL
        public var outputs: [String]
        public var seriesInstanceUID: String
        public var error: String?
    }

    public init(profile: CaseProfile, audit: AuditLog, logger: Logger = Logger(label: "nnseg.pipeline")) throws {
        self.profile = profile
        self.audit = audit
        self.logger = logger
        let precision = ConvolutionPrecision(rawValue: profile.precision) ?? .float32
        guard precision.isAvailable else {
            throw PipelineError(code: .precisionUnavailable, detail: "\(profile.file): inference.precision \(profile.precision): \(precision.unavailableReason)")
        }
        engine = try InferenceEngine(modelFolder: profile.modelFolder, folds: profile.folds, checkpointName: profile.checkpoint, precision: precision)
        // The model bundle's files, each with its SHA-256 (what exactly produced the outputs).
        var files: [String: AuditValue] = [:]
        let root = profile.modelFolder.standardizedFileURL
        if let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) {
            for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true {
                let relative = url.standardizedFileURL.path.replacingOccurrences(of: root.path + "/", with: "")
                files[relative] = .string(try Self.sha256(of: url))
            }
        }
        modelFiles = files
        modelHash = SHA256.hash(Array(files.keys.sorted().map { "\($0)=\(files[$0]?.string ?? "")" }.joined(separator: "\n").utf8)).hex
        var steps = profile.useModelPostprocessing ? (try Postprocessing.find(in: profile.modelFolder)?.steps ?? []) : []
        steps += profile.keepLargestComponent.map { [$0] }
        postprocessing = steps.isEmpty ? nil : Postprocessing(steps: steps, source: "profile \(profile.name)")
        ensemble = try Ensemble(engines: [engine], postprocessing: postprocessing)
    }

    /// Runs one study; the case is recorded whatever happens (a failure is an audit row too).
    @discardableResult
    /// - Parameter caseID: a caller-chosen ID (the watch service passes its claim ID so that a case
    ///   interrupted after its outputs were moved into place is recognised on restart).
    /// - Parameter deliveredSeries: the Series Instance UID the caller delivered (watch): the case row
    ///   carries it even when the case fails before a series is selected, so later deliveries of the same
    ///   series find it.
    public func run(study: URL, output: URL, caseID fixedID: String? = nil, deliveredSeries: String? = nil) throws -> Result {
        let started = Date()
        let caseID = fixedID ?? CaseID.make(at: started)
        let folder = output.appendingPathComponent(caseID)
        var seriesUID = deliveredSeries ?? ""
        var timings: [(String, Double)] = []
        func timed<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { timings.append((stage, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) }
            return try body()
        }
        try audit.append(caseID: caseID, kind: "case_started", payload: [
            "profile": .string(profile.name), "profile_sha256": .string(profile.sha256), "profile_content": .string(profile.content),
            "software": .string(SoftwareVersion.described), "host": .string(ProcessInfo.processInfo.hostName), "study": .string(study.path),
        ])
        do {
            // 0. Patient identifiers are pseudonymised under the site's key (or stored as they are, if the profile
            //    says so): without the key nothing is pseudonymised some weaker way — the case fails at once.
            if !profile.storePatientIdentifiers && audit.keys.pseudonym == nil {
                throw PipelineError(code: .pseudonymKeyMissing, detail: "the profile pseudonymises patient IDs and no pseudonym key is configured "
                                    + "(audit.pseudonymKey in the profile or NNSEG_PSEUDONYM_KEY; `nnseg keys init --pseudonym-key FILE` makes one)")
            }
            // 1. Select and load the series.
            let scan = try timed("scan") { try DICOMScanner(limits: profile.readerLimits).scan(study) }
            let selection = SeriesSelection.select(scan.stacks, rules: profile.selection)
            let distinctSeries = Set(scan.stacks.map(\.seriesInstanceUID))
            if scan.stacks.count > 1 && distinctSeries.count == 1 && requireSingleStack {
                throw PipelineError(code: .mixedSeries, detail: "one series holds \(scan.stacks.count) geometric stacks (split by "
                    + Set(scan.stacks.flatMap(\.splitReasons)).sorted().joined(separator: ", ") + ")")
            }
            guard let stack = selection.chosen else {
                throw PipelineError(code: .noMatchingSeries, detail: "no series matches \(selection.rule): "
                    + selection.rejected.map { "\($0.series): \($0.reason)" }.joined(separator: "; "))
            }
            seriesUID = stack.seriesInstanceUID
            let loaded = try timed("load") { try DICOMSeriesLoader(policy: GeometryPolicy(allowShear: profile.allowTilt, limits: profile.readerLimits)).load(stack) }
            let first = try DICOMFile(path: stack.instances[0].path)
            let patient = first.string(atPath: "0010,0020") ?? ""
            let patientID: (value: String, form: String, keyID: String?) = profile.storePatientIdentifiers
                ? (patient, "plain", nil) : try { let p = try audit.pseudonym(patient); return (p.value, p.form, p.keyID) }()
            try audit.append(caseID: caseID, kind: "input_series", payload: [
                "series_uid": .string(stack.seriesInstanceUID), "study_uid": .string(stack.studyInstanceUID),
                "frame_of_reference_uid": .string(stack.instances[0].frameOfReferenceUID), "modality": .string(stack.modality),
                "files": .int(Int64(stack.instances.count)), "slices": .int(Int64(stack.slices.count)),
                "pixel_sha256": .string(Self.sha256(floats: loaded.volume.voxels)),
                "patient_id": .string(patientID.value), "patient_id_form": .string(patientID.form),
                "pseudonym_key_id": patientID.keyID.map { .string($0) } ?? .null,
                "transfer_syntaxes": .array(stack.transferSyntaxes.map { .string($0) }), "lossy": .bool(loaded.isLossy),
                "warnings": .array(loaded.warnings.map { .string($0) }), "selection_rule": .string(selection.rule),
                "rejected": .array(selection.rejected.map { .object(["series_uid": .string($0.series), "reason": .string($0.reason)]) }),
                "skipped_files": .int(Int64(scan.skipped.count)),
            ])
            // The installed bundle the profile pinned (#21): its ID, hash, and the key that signed it.
            var bundleRecord = AuditValue.null
            if let b = profile.modelBundle {
                bundleRecord = .object(["id": .string(b.id), "sha256": .string(b.sha256), "signed_by": b.signedBy.map { .string($0) } ?? .null])
            }
            try audit.append(caseID: caseID, kind: "model", payload: [
                "folder": .string(profile.modelFolder.path), "configuration": .string(engine.bundle.configurationName),
                "trainer": .string(engine.bundle.trainerName), "folds": .array(engine.bundle.folds.map { .string($0.name) }),
                "precision": .string(engine.precision.rawValue),
                "files": .object(JSONObject(modelFiles)),
                "postprocessing": .array((postprocessing?.steps ?? []).map { .array($0.map { .int(Int64($0)) }) }),
                "bundle": bundleRecord,
            ])
            // 2. Everything that can be checked without the prediction, before it (#24): a case that cannot be
            //    written fails in seconds, naming what is missing, instead of after the model ran.
            let series = try ReferencedSeries(stack: stack, loaded: loaded, repairMissingUIDs: profile.repairMissingUIDs)
            try audit.append(caseID: caseID, kind: "preflight", payload: try preflight(stack: stack, series: series, output: output, caseID: caseID))
            // 3. Predict on the series grid.
            let v = loaded.volume
            let image = try CaseImage(channels: [v], sources: [stack.seriesInstanceUID])
            // Smooth contours follow the model's own margin between classes (one float16 plane more).
            let wantConfidence = profile.writeRTSTRUCT && profile.contourCleanup.mode == .smooth
            let result = try ensemble.predict(image, options: .init(mirroring: profile.mirroring, stepSize: profile.stepSize,
                                                                    confidence: wantConfidence))
            timings += result.timings.map { ($0.stage, $0.seconds) }
            let labels = LabelVolume(shape: v.shape, geometry: v.geometry, voxels: result.prediction.segmentation)
            // 4. Outputs, written into a temporary folder and moved into place together.
            let staging = output.appendingPathComponent(".\(caseID).partial")
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: staging) }
            let present = Set(labels.voxels)
            let structures = profile.structures.filter { present.contains(UInt16($0.label)) }  // 1…65535 (profile)
            let algorithm = AlgorithmIdentification(name: "nnseg \(engine.bundle.plans.datasetName)", version: SoftwareVersion.described,
                                                    parameters: "\(engine.bundle.configurationName) folds \(engine.bundle.folds.map(\.name).joined(separator: ",")) precision \(engine.precision.rawValue) profile \(profile.name) sha256:\(profile.sha256.prefix(16))")
            // Name-based output UIDs: the same series through the same model and profile gives the same objects.
            let uids = OutputUIDs(seed: freshUIDs ? nil : "\(series.seriesInstanceUID)|model \(modelHash)|profile \(profile.sha256)",
                                  root: profile.uidRoot)
            var outputs: [(String, String, [String: AuditValue])] = []
            var contouring: RTStructWriter.Result?
            var verification: OutputVerification.Report?
            try timed("write") {
                let written: CaseOutputs.Written
                do { written = try CaseOutputs.write(
                    labels: labels, image: v, series: series, structures: structures, algorithm: algorithm,
                    request: .init(nifti: profile.writeNIfTI ? staging.appendingPathComponent("labels.nii.gz") : nil,
                                   seg: profile.writeSEG ? staging.appendingPathComponent("seg.dcm") : nil,
                                   segOptions: SegmentationOptions(seriesNumber: profile.seriesNumberSEG, uids: uids, encoding: profile.segEncoding),
                                   rtstruct: profile.writeRTSTRUCT ? staging.appendingPathComponent("rtstruct.dcm") : nil,
                                   rtstructOptions: RTStructOptions(seriesNumber: profile.seriesNumberRTSTRUCT, uids: uids,
                                                                    minimumIslandMM3: profile.contourCleanup.minimumIslandMM3,
                                                                    minimumIslandMM3ByLabel: profile.contourCleanup.minimumIslandMM3ByLabel,
                                                                    fillHolesMM3: profile.contourCleanup.fillHolesMM3,
                                                                    pointBudgetPerROI: profile.contourCleanup.pointBudgetPerROI,
                                                                    pointBudgetPerFile: profile.contourCleanup.pointBudgetPerFile,
                                                                    strictPointBudget: profile.contourCleanup.strict,
                                                                    contours: profile.contourCleanup.mode, holes: profile.contourCleanup.holes),
                                   qa: profile.writeQASnapshot ? staging.appendingPathComponent("qa.png") : nil,
                                   report: profile.writeReport ? staging.appendingPathComponent("report.html") : nil,
                                   context: ReportContext(caseID: caseID, model: engine.bundle.plans.datasetName,
                                                          configuration: "\(engine.bundle.configurationName) folds \(engine.bundle.folds.map(\.name).joined(separator: ","))",
                                                          precision: "fp32", software: SoftwareVersion.described,
                                                          profile: "\(profile.name) sha256:\(profile.sha256.prefix(16))", sourceSeriesUID: series.seriesInstanceUID)),
                    confidence: result.prediction.confidence)
                } catch let failure as OutputVerificationFailure {
                    // The verdicts are on record; nothing was moved into place.
                    try audit.append(caseID: caseID, kind: "verification", payload: Self.payload(failure.report))
                    throw failure
                }
                verification = written.verification
                if written.nifti != nil { outputs.append(("nifti", "labels.nii.gz", [:])) }
                if let r = written.seg {
                    outputs.append(("seg", "seg.dcm", ["series_uid": .string(r.seriesInstanceUID), "sop_uid": .string(r.sopInstanceUID),
                                                       "frames": .int(Int64(r.frames))]))
                }
                if let r = written.rtstruct {
                    outputs.append(("rtstruct", "rtstruct.dcm", ["series_uid": .string(r.seriesInstanceUID), "sop_uid": .string(r.sopInstanceUID),
                                                                 "contours": .int(Int64(r.contours.values.reduce(0, +))),
                                                                 "points": .int(Int64(r.points.values.reduce(0, +)))]))
                    contouring = r
                }
                if let qa = written.qa {
                    outputs.append(("qa_snapshot", "qa.png", ["width": .int(Int64(qa.width)), "height": .int(Int64(qa.height)),
                                                              "pages": .int(Int64(written.qaPages))]))
                    for page in stride(from: 2, through: written.qaPages, by: 1) {
                        outputs.append(("qa_snapshot", "qa-\(page).png", ["page": .int(Int64(page))]))
                    }
                }
                if written.report != nil { outputs.append(("report", "report.html", [:])) }
                timings += written.timings.map { ("write_\($0.stage)", $0.seconds) }
                try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
                try FileManager.default.moveItem(at: staging, to: folder)
            }
            for (kind, name, extra) in outputs {
                var payload = extra
                payload["kind"] = .string(kind)
                payload["path"] = .string(folder.appendingPathComponent(name).path)
                payload["sha256"] = .string(try Self.sha256(of: folder.appendingPathComponent(name)))
                try audit.append(caseID: caseID, kind: "output", payload: payload)
            }
            if let verification { try audit.append(caseID: caseID, kind: "verification", payload: Self.payload(verification)) }
            // One pass over the labels for every structure's volume (the report uses the same function).
            let volumes = CaseReport.volumes(labels, structures: profile.structures)
            for s in profile.structures {
                var payload: [String: AuditValue] = [
                    "label": .int(Int64(s.label)), "name": .string(s.name), "cm3": .double(volumes[s.label] ?? 0),
                ]
                // The RTSTRUCT's contours of this ROI: points, and what the island/hole cleanup changed (contours only).
                if let r = contouring, let points = r.points[s.label] {
                    let cleanup = r.cleanup[s.label] ?? MaskCleanup.Counts()
                    payload["contour_points"] = .int(Int64(points))
                    payload["contours"] = .int(Int64(r.contours[s.label] ?? 0))
                    payload["islands_left_out"] = .int(Int64(cleanup.islandsRemoved))
                    payload["island_voxels_left_out"] = .int(Int64(cleanup.voxelsRemoved))
                    payload["holes_filled"] = .int(Int64(cleanup.holesFilled))
                    payload["hole_voxels_filled"] = .int(Int64(cleanup.voxelsFilled))
                }
                try audit.append(caseID: caseID, kind: "roi_volume", payload: payload)
            }
            if let r = contouring {
                try audit.append(caseID: caseID, kind: "contour_cleanup", payload: [
                    "minimum_island_mm3": .double(profile.contourCleanup.minimumIslandMM3), "fill_holes_mm3": .double(profile.contourCleanup.fillHolesMM3),
                    "minimum_island_mm3_by_label": .object(JSONObject(Dictionary(uniqueKeysWithValues: profile.contourCleanup.minimumIslandMM3ByLabel.map { ("\($0.key)", AuditValue.double($0.value)) }))),
                    "point_budget_per_roi": .int(Int64(profile.contourCleanup.pointBudgetPerROI)),
                    "point_budget_per_file": .int(Int64(profile.contourCleanup.pointBudgetPerFile)),
                    "contours": .string(profile.contourCleanup.mode.rawValue), "holes": .string(profile.contourCleanup.holes.rawValue),
                    "contour_source": .string(r.contourSource.rawValue),
                    "warnings": .array(r.warnings.map { .string($0) }),
                ])
                for warning in r.warnings { logger.warning("\(warning)", metadata: ["case": "\(caseID)"]) }
            }
            try audit.append(caseID: caseID, kind: "stage_timings", payload: .init(uniqueKeysWithValues: timings.map {
                ($0.0.replacingOccurrences(of: " ", with: "_"), AuditValue.double(($0.1 * 1000).rounded() / 1000))
            }))
            // What the case cost the process: in a watch worker (one case a process) exactly this case's peak;
            // in `run` over many cases, the peak so far.
            let usage = ProcessResources.current()
            try audit.append(caseID: caseID, kind: "resources", payload: [
                "peak_rss_mb": usage.peakResidentMB.map { .int(Int64($0)) } ?? .null, "cpu_s": .double((usage.cpuSeconds * 1000).rounded() / 1000),
            ])
            let status: CaseStatus = structures.isEmpty ? .emptyResult : .succeeded
            let receipt = try audit.finish(caseID: caseID, startedAt: started, status: status, model: engine.bundle.plans.datasetName,
                                           seriesInstanceUID: seriesUID, profile: profile.name, error: nil)
            // The case's receipt beside its outputs: evidence of it outside the database (#18).
            // (The case is closed: a receipt that cannot be written is logged, the anchor file still has it.)
            do { try receipt?.write(to: folder) } catch {
                logger.error("receipt not written", metadata: ["case": "\(caseID)", "error": "\(error)"])
            }
            logger.notice("case done", metadata: ["case": "\(caseID)", "status": "\(status.rawValue)", "series": "\(seriesUID)", "output": "\(folder.path)"])
            return Result(caseID: caseID, caseStatus: status, outputFolder: folder, outputs: outputs.map { $0.1 },
                          seriesInstanceUID: seriesUID, error: nil)
        } catch {
            let message = "\(error)"
            try audit.finish(caseID: caseID, startedAt: started, status: .failed, model: engine.bundle.plans.datasetName,
                             seriesInstanceUID: seriesUID, profile: profile.name, error: message)
            logger.error("case failed", metadata: ["case": "\(caseID)", "error": "\(message)"])
            return Result(caseID: caseID, caseStatus: .failed, outputFolder: folder, outputs: [], seriesInstanceUID: seriesUID, error: message)
        }
    }

    /// The checks that need no prediction: the references SEG/RTSTRUCT will carry (naming each missing
    /// attribute), the model's fit to the series (one channel; a CT-normalised model on a CT), the output
    /// folder (created, writable) and its free space against the outputs' expected size. Returns what was
    /// checked, for the audit log.
    func preflight(stack: ImageStack, series: ReferencedSeries, output: URL, caseID: String) throws -> [String: AuditValue] {
        var checks: [AuditValue] = []
        if profile.writeSEG || profile.writeRTSTRUCT {
            try series.validateForOutput("case \(caseID)")
            checks.append(.string("references"))
        }
        let channels = engine.bundle.dataset.channelNames
        guard channels.count == 1 else {
            throw PipelineError(code: .modelSeriesMismatch, detail: "the model takes \(channels.count) channels (\(channels.joined(separator: ", "))); a DICOM case supplies one series")
        }
        let scheme = engine.bundle.configuration.normalizationSchemes.first ?? ""
        if scheme == "CTNormalization" && stack.modality.uppercased() != "CT" {
            throw PipelineError(code: .modelSeriesMismatch, detail: "the model normalises its channel '\(channels[0])' as CT (CTNormalization); the series' Modality (0008,0060) is '\(stack.modality)'")
        }
        checks.append(.string("model_fit"))
        do {
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            let probe = output.appendingPathComponent(".\(caseID).probe")
            try Data().write(to: probe)
            try FileManager.default.removeItem(at: probe)
        } catch {
            throw PipelineError(code: .outputNotWritable, detail: "\(output.path): \(error.localizedDescription)")
        }
        checks.append(.string("output_writable"))
        let expected = expectedOutputBytes(series)
        let free = ((try? FileManager.default.attributesOfFileSystem(forPath: output.path))?[.systemFreeSize] as? NSNumber)?.int64Value
        if let free, free < expected {
            throw PipelineError(code: .diskSpaceLow, detail: "\(output.path) has \(free / 1_048_576) MB free; this case's outputs may need \(expected / 1_048_576) MB")
        }
        checks.append(.string("free_space"))
        var payload: [String: AuditValue] = [
            "checks": .array(checks), "repair_missing_uids": .bool(profile.repairMissingUIDs),
            "expected_output_mb": .int(expected / 1_048_576), "free_mb": free.map { .int($0 / 1_048_576) } ?? .null,
        ]
        if let note = series.repairNote { payload["repaired"] = .string(note) }
        return payload
    }

    /// A generous bound on the outputs' size: NIfTI uncompressed (2 bytes a voxel), a SEG with every frame of
    /// every structure, an RTSTRUCT at 2 bytes a voxel, the QA image.
    func expectedOutputBytes(_ series: ReferencedSeries) -> Int64 {
        let voxels = Int64(series.rows) * Int64(series.columns) * Int64(series.slices.count)
        var bytes: Int64 = 16 << 20
        if profile.writeNIfTI { bytes += 2 * voxels }
        if profile.writeSEG { bytes += voxels * Int64(max(1, engine.bundle.dataset.labels.count - 1)) / 8 }
        if profile.writeRTSTRUCT { bytes += 2 * voxels }
        return bytes
    }

    /// The read-back check as an audit payload: passed, reference problems and a verdict per ROI.
    static func payload(_ report: OutputVerification.Report) -> [String: AuditValue] {
        [
            "passed": .bool(report.passed), "reference_problems": .array(report.referenceProblems.map { .string($0) }),
            "rois": .array(report.rois.map { r in
                var o: [String: AuditValue] = ["label": .int(Int64(r.label)), "name": .string(r.name), "passed": .bool(r.passed),
                                               "cm3": .double(r.labelCM3), "problems": .array(r.problems.map { .string($0) })]
                if let v = r.segMismatchedVoxels { o["seg_mismatched_voxels"] = .int(Int64(v)) }
                if let v = r.rtstructDice { o["rtstruct_dice"] = .double(v) }
                if let v = r.rtstructAddedDistanceMM { o["rtstruct_added_distance_mm"] = .double(v) }
                if let v = r.centroidShiftMM { o["centroid_shift_mm"] = .double(v) }
                return .object(JSONObject(o))
            }),
        ]
    }

    static func sha256(of url: URL) throws -> String { try SHA256.hash(contentsOf: url).hex }

    static func sha256(floats: [Float]) -> String {
        var hash = SHA256()
        floats.withUnsafeBytes { hash.update(buffer: $0) }
        return hash.finalize().hex
    }
}

/// A case-level failure with a stable code.
public struct PipelineError: Error, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// One Series Instance UID holds several volumes (matrix, orientation or frame of reference differ).
        case mixedSeries = "MIXED_SERIES"
        /// The profile's selection rules reject every series of the study.
        case noMatchingSeries = "NO_MATCHING_SERIES"
        /// The model cannot take this series (channel count, or a CT-normalised model on another modality).
        case modelSeriesMismatch = "MODEL_SERIES_MISMATCH"
        /// The output folder cannot be created or written.
        case outputNotWritable = "OUTPUT_NOT_WRITABLE"
        /// Less free space under the output folder than the case's outputs may need.
        case diskSpaceLow = "DISK_SPACE_LOW"
        /// Patient identifiers are to be pseudonymised (the default) and no pseudonym key is configured.
        case pseudonymKeyMissing = "PSEUDONYM_KEY_MISSING"
        /// The profile asks for bf16 inference and this CPU has no bf16 convolutions (AVX-512 needed).
        case precisionUnavailable = "PRECISION_UNAVAILABLE"
    }

    public let code: Code
    public let detail: String
    public var description: String { "\(code.rawValue): \(detail)" }
}

/// This process's resource use, from the kernel.
struct ProcessResources {
    /// Peak resident memory (VmHWM), MiB; nil where /proc is not available.
    var peakResidentMB: Int?
    /// User + system CPU time of the process so far.
    var cpuSeconds: Double

    static func current() -> ProcessResources {
        var peak: Int?
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kB = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) {
            peak = kB / 1024
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        return ProcessResources(peakResidentMB: peak, cpuSeconds: cpu)
    }
}
