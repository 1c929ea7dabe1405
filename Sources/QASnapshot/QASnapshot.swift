import CLibz
import Foundation
import VolumeGeometry

/// The QA sheet a person reviews before trusting a case (issues #17, #24): pages of at most 2,000 pixels a
/// side, each a banner (AI-generated, not approved; case, model, precision), a grid of axial slices at the
/// series' native in-plane resolution (small matrices enlarged by a whole factor), chosen so that every
/// structure is shown near its largest extent — many structures share a slice, so 25+ fit on a page or two —
/// with every structure's outline in its colour, orientation letters and a scale bar, and a legend (colour,
/// name, volume in cm³).
///
/// ```swift
/// let pages = QASnapshot.sheet(image: ct, labels: labels, structures: described, context: context)
/// try QASnapshot.png(pages[0]).write(to: url)
/// ```
public enum QASnapshot {
    public struct Structure: Sendable {
        public var label: UInt16
        public var color: SIMD3<UInt8>
        public var name: String
        /// Volume in the label map, cm³.
        public var cubicCentimetres: Double
        public init(label: UInt16, color: SIMD3<UInt8>, name: String = "", cubicCentimetres: Double = 0) {
            self.label = label
            self.color = color
            self.name = name
            self.cubicCentimetres = cubicCentimetres
        }
    }

    /// What the banner says: case ID, model, precision and software (no patient data).
    public struct Context: Sendable {
        public var caseID: String
        public var model: String
        public var precision: String
        public var software: String
        public init(caseID: String, model: String, precision: String, software: String) {
            self.caseID = caseID
            self.model = model
            self.precision = precision
            self.software = software
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

    /// The longest side of a page.
    public static let maximumSide = 2000
    static let margin = 16, gap = 8, textScale = 2, line = 18

    /// The pages of the sheet; empty when no structure is present.
    public static func sheet(image: ImageVolume, labels: LabelVolume, structures: [Structure], context: Context) -> [Image] {
        let s = labels.shape
        let plane = s.y * s.x
        // Area of every structure on every slice.
        var index = [Int](repeating: -1, count: 65_536)
        for (i, st) in structures.enumerated() { index[Int(st.label)] = i }
        var area = [[Int]](repeating: [Int](repeating: 0, count: s.z), count: structures.count)
        for z in 0..<s.z {
            for i in (z * plane)..<((z + 1) * plane) {
                let a = index[Int(labels.voxels[i])]
                if a >= 0 { area[a][z] += 1 }
            }
        }
        let present = structures.indices.filter { area[$0].contains { $0 > 0 } }
        guard !present.isEmpty else { return [] }
        // Slices: greedily the one showing the most uncovered structures near their largest extent; a structure is
        // covered by a slice holding at least half its largest area.
        let largest = structures.indices.map { area[$0].max() ?? 0 }
        var uncovered = Set(present), slices: [(z: Int, shows: [Int])] = []
        while !uncovered.isEmpty {
            var best = (z: 0, score: -1.0)
            for z in 0..<s.z {
                let score = uncovered.reduce(0.0) { $0 + Double(area[$1][z]) / Double(max(largest[$1], 1)) }
                if score > best.score { best = (z, score) }
            }
            let covered = uncovered.filter { 2 * area[$0][best.z] >= largest[$0] }
            let shows = covered.isEmpty ? [uncovered.max { largest[$0] < largest[$1] }!] : Array(covered)
            let z = covered.isEmpty ? area[shows[0]].indices.max { area[shows[0]][$0] < area[shows[0]][$1] }! : best.z
            slices.append((z, shows.sorted()))
            uncovered.subtract(shows)
        }
        slices.sort { $0.z > $1.z }  // superior first (the slice order along the normal is the loader's)
        // Tiles: the native matrix, enlarged by a whole factor when small, reduced only if a tile would not fit.
        let sp = labels.geometry.spacing
        let pixelMM = min(sp.x, sp.y)
        var tileW = Int((Double(s.x) * sp.x / pixelMM).rounded()), tileH = Int((Double(s.y) * sp.y / pixelMM).rounded())
        let enlarge = max(1, 256 / max(tileW, tileH))
        tileW *= enlarge
        tileH *= enlarge
        let room = maximumSide - 2 * margin
        let shrink = min(1.0, Double(room) / Double(max(tileW, tileH)))
        tileW = max(1, Int(Double(tileW) * shrink)); tileH = max(1, Int(Double(tileH) * shrink))
        let columns = max(1, (room + gap) / (tileW + gap))
        let sorted = image.voxels.sorted()
        let low = sorted[sorted.count / 100], high = max(sorted[sorted.count * 99 / 100], low + 1e-6)
        let tiles = slices.map { tile(z: $0.z, image: image, labels: labels, structures: structures, width: tileW, height: tileH,
                                      low: low, high: high) }
        // Pages: banner, as many rows of tiles as fit with the legend, the legend.
        // A legend entry: swatch, name (22 characters at most), volume — columns as wide as the longest entry, as
        // many as the page's width holds (a page one tile wide is still 900 px: never fewer columns than that allows).
        let legendTexts = present.map { "\(structures[$0].name.prefix(22))  \(String(format: "%.1f", structures[$0].cubicCentimetres)) CM³" }
        let entryWidth = 20 + (legendTexts.map(\.count).max() ?? 0) * (BitmapFont.width + 1) * textScale + 24
        func legendLayout(pageWidth: Int) -> (columns: Int, rows: Int) {
            let columns = max(1, min(present.count, (pageWidth - 2 * margin) / entryWidth))
            return (columns, (present.count + columns - 1) / columns)
        }
        let bannerHeight = 2 * line + 12
        let legendHeight = legendLayout(pageWidth: 2 * margin + 900).rows * line + line
        let rowsPerPage = max(1, (maximumSide - 2 * margin - bannerHeight - legendHeight - 2 * gap + gap) / (tileH + gap))
        let perPage = rowsPerPage * columns
        let pageCount = (tiles.count + perPage - 1) / perPage
        var pages: [Image] = []
        for p in 0..<pageCount {
            let pageTiles = Array(tiles[(p * perPage)..<min(tiles.count, (p + 1) * perPage)])
            let usedColumns = min(columns, pageTiles.count), usedRows = (pageTiles.count + columns - 1) / columns
            let width = max(2 * margin + usedColumns * (tileW + gap) - gap, 2 * margin + 900)
            let (legendColumns, legendRows) = legendLayout(pageWidth: width)
            let height = 2 * margin + bannerHeight + gap + usedRows * (tileH + gap) + legendRows * line + line
            var page = Image(width: width, height: height, pixels: Array(repeating: SIMD3(24, 24, 24), count: width * height))
            // Banner.
            page.fill(x: 0, y: 0, width: width, height: margin + bannerHeight, color: SIMD3(160, 20, 20))
            page.text("AI-GENERATED CONTOURS - NOT APPROVED - REVIEW BEFORE CLINICAL USE", x: margin, y: margin / 2 + 2,
                      scale: textScale, color: SIMD3(255, 255, 255))
            page.text("CASE \(context.caseID)   MODEL \(context.model)   PRECISION \(context.precision)   \(context.software)   PAGE \(p + 1)/\(pageCount)",
                      x: margin, y: margin / 2 + 2 + line + 4, scale: textScale, color: SIMD3(255, 230, 200))
            // Tiles.
            let top = margin + bannerHeight + gap
            for (t, tile) in pageTiles.enumerated() {
                page.paste(tile, x: margin + (t % columns) * (tileW + gap), y: top + (t / columns) * (tileH + gap))
            }
            // Legend: every structure present, on every page.
            let legendTop = top + usedRows * (tileH + gap)
            let columnWidth = (width - 2 * margin) / legendColumns
            for (n, i) in present.enumerated() {
                let x = margin + (n / legendRows) * columnWidth, y = legendTop + (n % legendRows) * line
                page.fill(x: x, y: y + 1, width: 14, height: 14, color: structures[i].color)
                page.text(legendTexts[n], x: x + 20, y: y + 1, scale: textScale, color: SIMD3(235, 235, 235))
            }
            pages.append(page)
        }
        return pages
    }

    /// One axial slice: the image windowed to its 1st–99th percentile, the outline of every structure on it in its
    /// colour, orientation letters on the edges, a scale bar and the slice number.
    static func tile(z: Int, image: ImageVolume, labels: LabelVolume, structures: [Structure], width: Int, height: Int,
                     low: Float, high: Float) -> Image {
        let s = labels.shape
        var out = Image(width: width, height: height, pixels: Array(repeating: .zero, count: width * height))
        let columnOf = (0..<width).map { min(s.x - 1, $0 * s.x / width) }, rowOf = (0..<height).map { min(s.y - 1, $0 * s.y / height) }
        func label(_ r: Int, _ c: Int) -> UInt16 { labels[z, r, c] }
        for y in 0..<height {
            for x in 0..<width {
                let r = rowOf[y], c = columnOf[x]
                let g = UInt8(max(0, min(255, (image[z, r, c] - low) / (high - low) * 255)))
                out.pixels[y * width + x] = SIMD3(g, g, g)
            }
        }
        // Outlines at display resolution: a pixel whose voxel is the structure and a display neighbour's is not.
        var color = [UInt16: SIMD3<UInt8>]()
        for st in structures { color[st.label] = st.color }
        for y in 0..<height {
            for x in 0..<width {
                let l = label(rowOf[y], columnOf[x])
                guard l != 0, color[l] != nil else { continue }
                let edge = x == 0 || y == 0 || x == width - 1 || y == height - 1
                    || label(rowOf[y], columnOf[x - 1]) != l || label(rowOf[y], columnOf[x + 1]) != l
                    || label(rowOf[y - 1], columnOf[x]) != l || label(rowOf[y + 1], columnOf[x]) != l
                if edge, let c = color[l] {
                    out.pixels[y * width + x] = c
                    if x + 1 < width { out.pixels[y * width + x + 1] = c }
                }
            }
        }
        // Orientation letters: where the image's column (right) and row (down) directions point in the patient.
        let toPatient = labels.geometry.linear
        let right = toPatient * SIMD3(1, 0, 0), down = toPatient * SIMD3(0, 1, 0)
        func letter(_ v: SIMD3<Double>) -> String {
            let a = SIMD3(Swift.abs(v.x), Swift.abs(v.y), Swift.abs(v.z))
            if a.x >= a.y && a.x >= a.z { return v.x > 0 ? "L" : "R" }
            if a.y >= a.z { return v.y > 0 ? "P" : "A" }
            return v.z > 0 ? "S" : "I"
        }
        let yellow = SIMD3<UInt8>(255, 220, 0), scale = 2
        out.text(letter(right), x: width - 16, y: height / 2 - 7, scale: scale, color: yellow)
        out.text(letter(-right), x: 4, y: height / 2 - 7, scale: scale, color: yellow)
        out.text(letter(down), x: width / 2 - 5, y: height - 18, scale: scale, color: yellow)
        out.text(letter(-down), x: width / 2 - 5, y: 4, scale: scale, color: yellow)
        // Scale bar: a round length near a quarter of the field of view.
        let mmPerPixel = Double(s.x) * labels.geometry.spacing.x / Double(width)
        let quarter = Double(width) / 4 * mmPerPixel
        let length = [1.0, 2, 5, 10, 20, 50, 100, 200].last { $0 <= quarter } ?? 1
        let pixels = Int(length / mmPerPixel)
        out.fill(x: 8, y: height - 12, width: pixels, height: 4, color: SIMD3(255, 255, 255))
        out.text("\(Int(length)) MM", x: 8, y: height - 30, scale: scale, color: SIMD3(255, 255, 255))
        out.text("Z \(z + 1)/\(s.z)", x: width - BitmapFont.measure("Z \(z + 1)/\(s.z)", scale: scale) - 4, y: 4, scale: scale,
                 color: SIMD3(255, 255, 255))
        return out
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
