import VolumeGeometry

/// The attributes that must agree for frames to form one volume (spec §1.2). Orientation is compared
/// with a tolerance, so it is kept as a representative value and matched by ``StackBuilder``.
///
/// StudyInstanceUID is not part of the key: a Series Instance UID is globally unique, and writers that
/// give one series several study UIDs (seen in the rt-utils oblique fixture, made by SimpleITK) are
/// reported in ``ImageStack/warnings`` instead of being split into single slices.
public struct StackKey: Hashable, Sendable {
    public var seriesInstanceUID: String
    public var frameOfReferenceUID: String
    public var sopClassUID: String
    public var modality: String
    public var seriesNumber: Int?
    public var rows: Int
    public var columns: Int
    public var pixelSpacing: [Double]
    public var isLocalizer: Bool
    public var echoNumbers: String
    public var sequenceName: String
    public var temporalPosition: String
    public var pixelFormat: String
    public var stackID: String

    /// Attribute names, in the order reports list them.
    static let fieldNames = [
        "SeriesInstanceUID", "FrameOfReferenceUID", "SOPClassUID", "Modality", "SeriesNumber",
        "Rows/Columns", "PixelSpacing", "ImageType LOCALIZER", "EchoNumbers", "SequenceName",
        "TemporalPositionIdentifier", "pixel format", "StackID",
    ]

    var fieldValues: [String] {
        [seriesInstanceUID, frameOfReferenceUID, sopClassUID, modality,
         seriesNumber.map(String.init) ?? "", "\(rows)x\(columns)", pixelSpacing.map { "\($0)" }.joined(separator: "\\"),
         "\(isLocalizer)", echoNumbers, sequenceName, temporalPosition, pixelFormat, stackID]
    }
}

/// One frame of a stack: which instance and frame it comes from, and where it lies.
public struct StackSlice: Sendable, Equatable {
    /// Index into ``ImageStack/instances``.
    public var instanceIndex: Int
    public var frameIndex: Int
    public var position: SIMD3<Double>?
    /// Distance along the slice normal, `N · IPP` (spec §1.4); 0 when there is no geometry.
    public var projection: Double
}

/// A set of frames that share one series, frame of reference, matrix, orientation and pixel format —
/// a candidate volume — sorted by position along the slice normal.
public struct ImageStack: Sendable {
    public var key: StackKey
    public var instances: [InstanceHeader]
    public var slices: [StackSlice]
    /// Row and column direction cosines shared by the stack (nil without geometry).
    public var orientation: (row: SIMD3<Double>, column: SIMD3<Double>)?
    /// Attributes that set this stack apart from other stacks of the same series (spec R-RD-02).
    public var splitReasons: [String]
    /// Geometry analysis; nil when frames lack position, orientation or spacing.
    public var geometry: StackGeometry?
    /// Why `geometry` is nil.
    public var missingGeometry: String?
    /// Header inconsistencies that did not split the stack (e.g. several Study Instance UIDs).
    public var warnings: [String] = []

    /// Study Instance UID of the first instance.
    public var studyInstanceUID: String { instances.first?.studyInstanceUID ?? "" }

    public var modality: String { key.modality }
    public var seriesInstanceUID: String { key.seriesInstanceUID }
    public var seriesDescription: String { instances.first?.seriesDescription ?? "" }
    public var seriesNumber: Int? { key.seriesNumber }
    public var sopClassUID: String { key.sopClassUID }
    public var transferSyntaxes: [String] { Array(Set(instances.map(\.transferSyntaxUID))).sorted() }
    public var isLossy: Bool { instances.contains { $0.lossyImageCompression } }
    /// True when any instance lacks its own SOP Instance UID (outputs could not reference it; R-RD-03).
    public var hasEmptySOPInstanceUIDs: Bool { instances.contains { $0.sopInstanceUIDFromMeta || $0.sopInstanceUID.isEmpty } }

    /// "AXIAL", "CORONAL", "SAGITTAL" when the normal is within ~25° of an axis, else "OBLIQUE".
    public var orientationLabel: String {
        guard let o = orientation else { return "UNKNOWN" }
        let n = cross(o.row, o.column)
        let a = SIMD3(abs(n.x), abs(n.y), abs(n.z))
        if a.z >= 0.9 { return "AXIAL" }
        if a.y >= 0.9 { return "CORONAL" }
        if a.x >= 0.9 { return "SAGITTAL" }
        return "OBLIQUE"
    }
}

/// Groups instances into series and splits each series into geometric stacks.
public struct StackBuilder: Sendable {
    /// Cosine tolerance for "same orientation".
    public var orientationTolerance: Double = 1e-4

    public init() {}

    public struct Result: Sendable {
        public var stacks: [ImageStack]
        /// Exact duplicates (same SOP Instance UID at the same position) that were left out.
        public var droppedDuplicates: [SkippedFile]
    }

    public func build(_ instances: [InstanceHeader]) -> Result {
        // 1. Bucket frames by key (+ orientation cluster).
        struct Bucket {
            var key: StackKey
            var orientation: (row: SIMD3<Double>, column: SIMD3<Double>)?
            var members: [(instance: Int, frame: Int)] = []
        }
        var buckets: [Bucket] = []
        for (i, instance) in instances.enumerated() {
            for frame in instance.frames {
                let key = Self.key(instance, frame)
                let o = frame.imageOrientation.map { (normalize($0.row), normalize($0.column)) }
                if let b = buckets.firstIndex(where: { $0.key == key && sameOrientation($0.orientation, o) }) {
                    buckets[b].members.append((i, frame.frameIndex))
                } else {
                    buckets.append(Bucket(key: key, orientation: o, members: [(i, frame.frameIndex)]))
                }
            }
        }
        // 2. Each bucket becomes a stack with its own instance list, sorted slices and geometry.
        var dropped: [SkippedFile] = []
        var stacks: [ImageStack] = buckets.map { bucket in
            var localIndex: [Int: Int] = [:]
            var stackInstances: [InstanceHeader] = []
            var slices: [StackSlice] = []
            let normal = bucket.orientation.map { cross($0.row, $0.column) }
            for member in bucket.members {
                let instance = instances[member.instance]
                let local: Int
                if let existing = localIndex[member.instance] {
                    local = existing
                } else {
                    local = stackInstances.count
                    localIndex[member.instance] = local
                    stackInstances.append(instance)
                }
                let position = instance.frames[member.frame].imagePosition
                let projection = (normal != nil && position != nil) ? dot(normal!, position!) : 0
                slices.append(StackSlice(instanceIndex: local, frameIndex: member.frame, position: position,
                                         projection: projection))
            }
            slices.sort {
                ($0.projection, stackInstances[$0.instanceIndex].instanceNumber ?? 0, $0.frameIndex, stackInstances[$0.instanceIndex].path)
                    < ($1.projection, stackInstances[$1.instanceIndex].instanceNumber ?? 0, $1.frameIndex, stackInstances[$1.instanceIndex].path)
            }
            // Exact duplicates: same SOP Instance UID and frame at the same position.
            var kept: [StackSlice] = []
            for slice in slices {
                if let last = kept.last, abs(last.projection - slice.projection) < 1e-3,
                   last.frameIndex == slice.frameIndex,
                   stackInstances[last.instanceIndex].sopInstanceUID == stackInstances[slice.instanceIndex].sopInstanceUID,
                   !stackInstances[slice.instanceIndex].sopInstanceUID.isEmpty,
                   stackInstances[last.instanceIndex].path != stackInstances[slice.instanceIndex].path {
                    dropped.append(SkippedFile(path: stackInstances[slice.instanceIndex].path, code: nil,
                                               reason: "duplicate of \(stackInstances[last.instanceIndex].path) (same SOP Instance UID)"))
                    continue
                }
                kept.append(slice)
            }
            // Keep only the instances that still contribute a slice, renumbered.
            var renumber: [Int: Int] = [:]
            var usedInstances: [InstanceHeader] = []
            for i in kept.indices {
                let old = kept[i].instanceIndex
                if renumber[old] == nil {
                    renumber[old] = usedInstances.count
                    usedInstances.append(stackInstances[old])
                }
                kept[i].instanceIndex = renumber[old]!
            }
            var stack = ImageStack(key: bucket.key, instances: usedInstances, slices: kept,
                                   orientation: bucket.orientation, splitReasons: [], geometry: nil,
                                   missingGeometry: nil)
            let studies = Set(usedInstances.map(\.studyInstanceUID))
            if studies.count > 1 {
                stack.warnings.append("\(studies.count) different Study Instance UIDs in one series")
            }
            do throws(DICOMImportError) {
                stack.geometry = try StackGeometry(stack: stack)
            } catch {
                stack.missingGeometry = error.detail
            }
            return stack
        }
        // 3. Split reasons: what differs from the other stacks of the same series.
        let fieldValues = stacks.map(\.key.fieldValues)
        for i in stacks.indices {
            var reasons: Set<String> = []
            for j in stacks.indices where j != i && stacks[j].key.seriesInstanceUID == stacks[i].key.seriesInstanceUID {
                let a = fieldValues[i], b = fieldValues[j]
                for (n, name) in StackKey.fieldNames.enumerated() where a[n] != b[n] { reasons.insert(name) }
                if stacks[i].key == stacks[j].key { reasons.insert("ImageOrientationPatient") }
            }
            stacks[i].splitReasons = StackKey.fieldNames.filter(reasons.contains)
                + (reasons.contains("ImageOrientationPatient") ? ["ImageOrientationPatient"] : [])
        }
        // Deterministic order: study, series number, series UID, then larger stacks first.
        stacks.sort {
            ($0.studyInstanceUID, $0.key.seriesNumber ?? Int.max, $0.key.seriesInstanceUID, -$0.slices.count)
                < ($1.studyInstanceUID, $1.key.seriesNumber ?? Int.max, $1.key.seriesInstanceUID, -$1.slices.count)
        }
        return Result(stacks: stacks, droppedDuplicates: dropped)
    }

    static func key(_ instance: InstanceHeader, _ frame: FrameHeader) -> StackKey {
        let f = instance.pixelFormat
        return StackKey(
            seriesInstanceUID: instance.seriesInstanceUID,
            frameOfReferenceUID: instance.frameOfReferenceUID, sopClassUID: instance.sopClassUID,
            modality: instance.modality, seriesNumber: instance.seriesNumber, rows: f.rows, columns: f.columns,
            pixelSpacing: frame.pixelSpacing.map { [$0.x, $0.y] } ?? [],
            isLocalizer: instance.imageType.contains { $0.uppercased() == "LOCALIZER" },
            echoNumbers: instance.echoNumbers, sequenceName: instance.sequenceName,
            temporalPosition: instance.temporalPositionIdentifier,
            pixelFormat: "\(f.samplesPerPixel)x\(f.bitsAllocated)\(f.isSigned ? "s" : "u") \(f.photometricInterpretation)",
            stackID: frame.stackID ?? "")
    }

    private func sameOrientation(_ a: (row: SIMD3<Double>, column: SIMD3<Double>)?,
                                 _ b: (row: SIMD3<Double>, column: SIMD3<Double>)?) -> Bool {
        switch (a, b) {
        case (nil, nil): return true
        case let (a?, b?):
            return maxAbs(a.row - b.row) <= orientationTolerance && maxAbs(a.column - b.column) <= orientationTolerance
        default: return false
        }
    }
}
