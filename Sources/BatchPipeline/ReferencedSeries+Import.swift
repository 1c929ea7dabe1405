import DICOMExport
import DICOMImport
import Digest
import VolumeGeometry

extension ReferencedSeries {
    /// The output-side description of a loaded input stack: every slice's instance and position, in the
    /// volume order the loader used.
    ///
    /// `repairMissingUIDs` (an explicit, logged choice — spec R-RD-03): instances whose dataset lacks its
    /// SOP Instance UID are referenced by the file meta's MediaStorageSOPInstanceUID, and empty Study /
    /// Series Instance UIDs are replaced by UIDs derived deterministically (2.25 form, SHA-256) from the
    /// frame of reference and the instance UIDs, so repeated exports of one series agree. Without it such
    /// series are refused by the writers.
    public init(stack: ImageStack, loaded: LoadedSeries, repairMissingUIDs: Bool = false) throws {
        guard let geometry = stack.geometry else {
            throw DICOMImportError(.noGeometry, stack.seriesInstanceUID, stack.missingGeometry ?? "no geometry")
        }
        let first = stack.instances[0]
        let slices = stack.slices.map { s -> Slice in
            let instance = stack.instances[s.instanceIndex]
            let usable = !instance.sopInstanceUIDFromMeta || repairMissingUIDs
            return Slice(sopClassUID: instance.sopClassUID, sopInstanceUID: usable ? instance.sopInstanceUID : "",
                         path: instance.path, position: s.position ?? .zero)
        }
        var study = first.studyInstanceUID, seriesUID = stack.seriesInstanceUID
        var repaired: [String] = []
        if repairMissingUIDs {
            let fromMeta = stack.slices.filter { stack.instances[$0.instanceIndex].sopInstanceUIDFromMeta }.count
            if fromMeta > 0 { repaired.append("SOPInstanceUID from the file meta in \(fromMeta) of \(slices.count) instances") }
            let seed = first.frameOfReferenceUID + "|" + slices.map(\.sopInstanceUID).joined(separator: "|")
            if study.isEmpty {
                study = Self.derivedUID(seed + "|study")
                repaired.append("StudyInstanceUID derived")
            }
            if seriesUID.isEmpty {
                seriesUID = Self.derivedUID(seed + "|series")
                repaired.append("SeriesInstanceUID derived")
            }
        }
        self.init(studyInstanceUID: study, seriesInstanceUID: seriesUID,
                  frameOfReferenceUID: first.frameOfReferenceUID, modality: stack.modality, rows: first.pixelFormat.rows,
                  columns: first.pixelFormat.columns, pixelSpacing: geometry.pixelSpacing, rowDirection: geometry.rowDirection,
                  columnDirection: geometry.columnDirection, sliceThickness: first.frames[0].sliceThickness, slices: slices,
                  geometry: loaded.volume.geometry, isLossy: loaded.isLossy)
        if !repaired.isEmpty { repairNote = "Source UIDs repaired for research use (repairMissingUIDs): " + repaired.joined(separator: "; ") }
    }
}

extension ReferencedSeries {
    /// A UID of the form 2.25.<decimal of the first 128 bits of SHA-256(seed)> (PS3.5 B.2).
    static func derivedUID(_ seed: String) -> String {
        OutputUIDs.uid(bits: Array(SHA256.hash(Array(seed.utf8)).bytes.prefix(16)), root: nil)
    }
}
