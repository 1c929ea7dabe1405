import Foundation

/// What SimpleITK 2.5.7 reported for the shared data (`Fixtures/golden/sitk_geometry.json`, made by
/// `Ops/golden/make_sitk_geometry.py`).
public struct SimpleITKImage: Sendable {
    public let size: [Int]
    public let spacing: [Double]
    public let origin: [Double]
    /// Row-major 3×3.
    public let direction: [Double]
    public let pixelType: String
    public let sum: Double
    public let files: [String]
    public let arraySHA256: String?
}

public enum SimpleITKGolden {
    private static func load(_ section: String) -> [String: SimpleITKImage] {
        let url = SharedData.fixtures.appendingPathComponent("golden/sitk_geometry.json")
        let root = (try? SharedData.json(url) as? [String: Any]) ?? [:]
        return (root[section] as? [String: [String: Any]] ?? [:]).mapValues(image)
    }

    private static func image(_ d: [String: Any]) -> SimpleITKImage {
        SimpleITKImage(
            size: d["size"] as! [Int], spacing: d["spacing"] as! [Double], origin: d["origin"] as! [Double],
            direction: d["direction"] as! [Double], pixelType: d["pixel_type"] as! String, sum: d["sum"] as! Double,
            files: d["files"] as? [String] ?? [], arraySHA256: d["array_sha256_le"] as? String)
    }

    /// NIfTI files, keyed by path relative to `shared/data`.
    public static let nifti: [String: SimpleITKImage] = load("nifti")

    /// DICOM series, keyed by "folder#SeriesInstanceUID" (folder relative to `shared/data`).
    public static let dicomSeries: [String: SimpleITKImage] = load("dicom_series")

    /// The series SimpleITK found in one folder.
    public static func series(inFolder folder: String) -> [(uid: String, image: SimpleITKImage)] {
        dicomSeries.filter { $0.key.hasPrefix(folder + "#") }
            .map { (String($0.key.dropFirst(folder.count + 1)), $0.value) }
            .sorted { $0.uid < $1.uid }
    }
}
