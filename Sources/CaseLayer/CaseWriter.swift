import Foundation
import NIfTI
import Inference
import VolumeGeometry
import ZIPFoundation

/// Writes a case's results as nnU-Net does: `<id><ending>` (uint8, or uint16 above 255 labels) on the
/// input's geometry, and optionally `<id>.npz` holding `probabilities` (float32, `(K, z, y, x)`).
public enum CaseWriter {
    public static func writeSegmentation(_ prediction: CasePrediction, geometry: VolumeGeometry, to url: URL) throws {
        let shape = VolumeShape(z: prediction.shape[0], y: prediction.shape[1], x: prediction.shape[2])
        let voxels: NIfTIVoxels = (prediction.segmentation.max() ?? 0) < 256
            ? .uint8(prediction.segmentation.map { UInt8($0) }) : .uint16(prediction.segmentation)
        try NIfTIImage(voxels: voxels, shape: shape, geometry: geometry).write(to: url)
    }

    /// `numpy.savez_compressed(url, probabilities=…)`: a deflated zip with one NPY v1 member.
    public static func writeProbabilities(_ probabilities: [[Float]], shape: [Int], to url: URL) throws {
        let arrayShape = [probabilities.count] + shape
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(arrayShape.map(String.init).joined(separator: ", ")), ), }"
        // Pad so that magic (6) + version (2) + length (2) + header + "\n" is a multiple of 64.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var npy = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        npy.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        npy.append(contentsOf: Array(header.utf8))
        for channel in probabilities {
            channel.withUnsafeBufferPointer { npy.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4)) }
        }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(UUID().uuidString)")
        do {
            let archive = try Archive(url: temporary, accessMode: .create)
            try archive.addEntry(with: "probabilities.npy", type: .file, uncompressedSize: Int64(npy.count), compressionMethod: .deflate) { position, size in
                npy.subdata(in: Int(position)..<(Int(position) + size))
            }
            // rename(2): an existing file is replaced atomically, never left deleted.
            guard rename(temporary.path, url.path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw CaseSourceError(subject: url.path, detail: "cannot write probabilities (\(error))")
        }
    }
}

/// Reads what ``CaseWriter`` (or nnU-Net with `--save_probabilities`/`--npz`) wrote.
public enum CaseReader {
    /// `<id>.npz`'s `probabilities` as one float32 array per class, with the spatial shape `(z, y, x)`.
    public static func readProbabilities(_ url: URL) throws -> (shape: [Int], probabilities: [[Float]]) {
        let array = try NPYArray.member("probabilities", of: url)
        guard array.shape.count == 4, array.shape[0] > 0, array.descr.hasPrefix("<f") else {
            throw NPYError(file: url.path, problem: "probabilities of shape \(array.shape) (\(array.descr)); expected float (classes, z, y, x)")
        }
        let values = try array.floats()
        let n = array.count / array.shape[0]
        return (Array(array.shape.dropFirst()), (0..<array.shape[0]).map { Array(values[($0 * n)..<(($0 + 1) * n)]) })
    }
}
