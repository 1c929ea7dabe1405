import DICOMExport
import DICOMImport
import VolumeGeometry

extension ReferencedSeries {
    /// The output-side description of a loaded input stack: every slice's instance and position, in the
    /// volume order the loader used.
    public init(stack: ImageStack, loaded: LoadedSeries) throws {
        guard let geometry = stack.geometry else {
            throw DICOMImportError(.noGeometry, stack.seriesInstanceUID, stack.missingGeometry ?? "no geometry")
        }
        let first = stack.instances[0]
        let slices = stack.slices.map { s -> Slice in
            let instance = stack.instances[s.instanceIndex]
            return Slice(sopClassUID: instance.sopClassUID, sopInstanceUID: instance.sopInstanceUIDFromMeta ? "" : instance.sopInstanceUID,
                         path: instance.path, position: s.position ?? .zero)
        }
        self.init(studyInstanceUID: first.studyInstanceUID, seriesInstanceUID: stack.seriesInstanceUID,
                  frameOfReferenceUID: first.frameOfReferenceUID, modality: stack.modality, rows: first.pixelFormat.rows,
                  columns: first.pixelFormat.columns, pixelSpacing: geometry.pixelSpacing, rowDirection: geometry.rowDirection,
                  columnDirection: geometry.columnDirection, sliceThickness: first.frames[0].sliceThickness, slices: slices,
                  geometry: loaded.volume.geometry, isLossy: loaded.isLossy)
    }
}
