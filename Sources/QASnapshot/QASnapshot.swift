import CLibz
import Foundation
import VolumeGeometry

/// A PNG montage for a quick visual check of a case: one row per structure, axial / coronal / sagittal
/// planes through its centroid, the image windowed to its 1st–99th percentile, the structure's outline
/// drawn in its colour. Planes keep their physical aspect; superior is up in coronal and sagittal views.
public enum QASnapshot {
    public struct Structure: Sendable {
        public var label: UInt16
        public var color: SIMD3<UInt8>
        public init(label: UInt16, color: SIMD3<UInt8>) {
            self.label = label
            self.color = color
        }
    }

    /// An RGB image, rows top to bottom.
    public struct Image: Sendable {
        public var width: Int
        public var height: Int
        public var pixels: [SIMD3<UInt8>]
        public init(width: Int, height: Int, pixels: [SIMD3<UInt8>]) {
            self.width = width
            self.height = height
            self.pixels = pixels
        }
    }

    public static let panelHeight = 160

    /// Renders the montage; structures absent from the labels are skipped. nil when none is present.
    public static func render(image: ImageVolume, labels: LabelVolume, structures: [Structure]) -> Image? {
        let s = image.shape
        let sorted = image.voxels.sorted()
        let lo = sorted[sorted.count / 100], hi = max(sorted[sorted.count * 99 / 100], lo + 1e-6)
        var rows: [[Image]] = []
        for structure in structures {
            var sum = SIMD3<Double>(0, 0, 0), n = 0.0
            for z in 0..<s.z { for y in 0..<s.y { for x in 0..<s.x where labels[z, y, x] == structure.label {
                sum += SIMD3(Double(x), Double(y), Double(z)); n += 1
            } } }
            guard n > 0 else { continue }
            let c = sum / n
            let (cx, cy, cz) = (Int(c.x.rounded()), Int(c.y.rounded()), Int(c.z.rounded()))
            let sp = image.geometry.spacing
            // (rows, columns, row spacing, column spacing, sample)
            let axial = panel(rows: s.y, columns: s.x, rowSpacing: sp.y, columnSpacing: sp.x) { r, col in (cz, r, col) }
            let coronal = panel(rows: s.z, columns: s.x, rowSpacing: sp.z, columnSpacing: sp.x) { r, col in (s.z - 1 - r, cy, col) }
            let sagittal = panel(rows: s.z, columns: s.y, rowSpacing: sp.z, columnSpacing: sp.y) { r, col in (s.z - 1 - r, col, cx) }
            rows.append([axial, coronal, sagittal].map { p in
                draw(p, image: image, labels: labels, structure: structure, low: lo, high: hi)
            })
        }
        guard !rows.isEmpty else { return nil }
        let gap = 4
        let width = rows.map { $0.reduce(gap) { $0 + $1.width + gap } }.max()!
        let height = rows.count * (panelHeight + gap) + gap
        var out = Image(width: width, height: height, pixels: Array(repeating: SIMD3(24, 24, 24), count: width * height))
        for (r, row) in rows.enumerated() {
            var x0 = gap
            let y0 = gap + r * (panelHeight + gap)
            for p in row {
                for y in 0..<p.height { for x in 0..<p.width { out.pixels[(y0 + y) * width + x0 + x] = p.pixels[y * p.width + x] } }
                x0 += p.width + gap
            }
        }
        return out
    }

    struct Panel {
        let width: Int
        let height: Int
        /// Voxel (z, y, x) shown at each output pixel.
        let source: [(Int, Int, Int)]
        let rows: Int
        let columns: Int
        let sample: (Int, Int) -> (Int, Int, Int)
        let rowOf: [Int]
        let columnOf: [Int]
    }

    static func panel(rows: Int, columns: Int, rowSpacing: Double, columnSpacing: Double,
                      sample: @escaping (Int, Int) -> (Int, Int, Int)) -> Panel {
        let physicalHeight = Double(rows) * rowSpacing, physicalWidth = Double(columns) * columnSpacing
        let width = max(1, Int((Double(panelHeight) * physicalWidth / physicalHeight).rounded()))
        let rowOf = (0..<panelHeight).map { min(rows - 1, Int(Double($0) / Double(panelHeight) * Double(rows))) }
        let columnOf = (0..<width).map { min(columns - 1, Int(Double($0) / Double(width) * Double(columns))) }
        return Panel(width: width, height: panelHeight, source: [], rows: rows, columns: columns, sample: sample, rowOf: rowOf, columnOf: columnOf)
    }

    static func draw(_ p: Panel, image: ImageVolume, labels: LabelVolume, structure: Structure, low: Float, high: Float) -> Image {
        var pixels = [SIMD3<UInt8>](repeating: .zero, count: p.width * p.height)
        func inside(_ r: Int, _ c: Int) -> Bool {
            guard r >= 0, c >= 0, r < p.rows, c < p.columns else { return false }
            let (z, y, x) = p.sample(r, c)
            return labels[z, y, x] == structure.label
        }
        for y in 0..<p.height {
            for x in 0..<p.width {
                let r = p.rowOf[y], c = p.columnOf[x]
                let (vz, vy, vx) = p.sample(r, c)
                let g = UInt8(max(0, min(255, (image[vz, vy, vx] - low) / (high - low) * 255)))
                var pixel = SIMD3(g, g, g)
                if inside(r, c) && (!inside(r - 1, c) || !inside(r + 1, c) || !inside(r, c - 1) || !inside(r, c + 1)) {
                    pixel = structure.color
                }
                pixels[y * p.width + x] = pixel
            }
        }
        return Image(width: p.width, height: p.height, pixels: pixels)
    }

    /// Encodes an 8-bit RGB PNG.
    public static func png(_ image: Image) -> Data {
        var raw = [UInt8]()
        raw.reserveCapacity(image.height * (1 + image.width * 3))
        for y in 0..<image.height {
            raw.append(0)  // filter: none
            for x in 0..<image.width {
                let p = image.pixels[y * image.width + x]
                raw += [p.x, p.y, p.z]
            }
        }
        var compressedLength = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedLength))
        _ = compress2(&compressed, &compressedLength, raw, uLong(raw.count), 6)
        compressed.removeSubrange(Int(compressedLength)...)
        var out = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        func chunk(_ type: String, _ body: [UInt8]) {
            let typed = Array(type.utf8) + body
            out.append(contentsOf: bigEndian(UInt32(body.count)))
            out.append(contentsOf: typed)
            let crc = typed.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            out.append(contentsOf: bigEndian(UInt32(crc)))
        }
        chunk("IHDR", bigEndian(UInt32(image.width)) + bigEndian(UInt32(image.height)) + [8, 2, 0, 0, 0])
        chunk("IDAT", compressed)
        chunk("IEND", [])
        return out
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
}
