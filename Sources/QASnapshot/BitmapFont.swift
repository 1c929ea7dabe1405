/// A 5×7 dot-matrix font for the QA sheet's labels, drawn by hand (capitals, digits, common punctuation;
/// lower case is drawn as capitals, anything else as "?"). Each glyph is seven rows of five bits, the leftmost
/// pixel in bit 4.
enum BitmapFont {
    static let width = 5, height = 7

    static func rows(_ character: Character) -> [UInt8] {
        let upper = Character(character.uppercased())
        return glyphs[upper] ?? glyphs["?"]!
    }

    /// The width in pixels of `text` at `scale` (one pixel column of spacing per glyph, scaled).
    static func measure(_ text: String, scale: Int) -> Int { text.count * (width + 1) * scale }

    private static func g(_ rows: String) -> [UInt8] {
        rows.split(separator: " ").map { UInt8($0, radix: 2)! }
    }

    static let glyphs: [Character: [UInt8]] = [
        "A": g("01110 10001 10001 11111 10001 10001 10001"), "B": g("11110 10001 10001 11110 10001 10001 11110"),
        "C": g("01110 10001 10000 10000 10000 10001 01110"), "D": g("11100 10010 10001 10001 10001 10010 11100"),
        "E": g("11111 10000 10000 11110 10000 10000 11111"), "F": g("11111 10000 10000 11110 10000 10000 10000"),
        "G": g("01110 10001 10000 10111 10001 10001 01111"), "H": g("10001 10001 10001 11111 10001 10001 10001"),
        "I": g("01110 00100 00100 00100 00100 00100 01110"), "J": g("00111 00010 00010 00010 00010 10010 01100"),
        "K": g("10001 10010 10100 11000 10100 10010 10001"), "L": g("10000 10000 10000 10000 10000 10000 11111"),
        "M": g("10001 11011 10101 10101 10001 10001 10001"), "N": g("10001 10001 11001 10101 10011 10001 10001"),
        "O": g("01110 10001 10001 10001 10001 10001 01110"), "P": g("11110 10001 10001 11110 10000 10000 10000"),
        "Q": g("01110 10001 10001 10001 10101 10010 01101"), "R": g("11110 10001 10001 11110 10100 10010 10001"),
        "S": g("01111 10000 10000 01110 00001 00001 11110"), "T": g("11111 00100 00100 00100 00100 00100 00100"),
        "U": g("10001 10001 10001 10001 10001 10001 01110"), "V": g("10001 10001 10001 10001 10001 01010 00100"),
        "W": g("10001 10001 10001 10101 10101 10101 01010"), "X": g("10001 10001 01010 00100 01010 10001 10001"),
        "Y": g("10001 10001 10001 01010 00100 00100 00100"), "Z": g("11111 00001 00010 00100 01000 10000 11111"),
        "0": g("01110 10001 10011 10101 11001 10001 01110"), "1": g("00100 01100 00100 00100 00100 00100 01110"),
        "2": g("01110 10001 00001 00010 00100 01000 11111"), "3": g("11111 00010 00100 00010 00001 10001 01110"),
        "4": g("00010 00110 01010 10010 11111 00010 00010"), "5": g("11111 10000 11110 00001 00001 10001 01110"),
        "6": g("00110 01000 10000 11110 10001 10001 01110"), "7": g("11111 00001 00010 00100 01000 01000 01000"),
        "8": g("01110 10001 10001 01110 10001 10001 01110"), "9": g("01110 10001 10001 01111 00001 00010 01100"),
        " ": g("00000 00000 00000 00000 00000 00000 00000"), ".": g("00000 00000 00000 00000 00000 01100 01100"),
        ",": g("00000 00000 00000 00000 01100 00100 01000"), ":": g("00000 01100 01100 00000 01100 01100 00000"),
        "-": g("00000 00000 00000 11111 00000 00000 00000"), "_": g("00000 00000 00000 00000 00000 00000 11111"),
        "/": g("00000 00001 00010 00100 01000 10000 00000"), "(": g("00010 00100 01000 01000 01000 00100 00010"),
        ")": g("01000 00100 00010 00010 00010 00100 01000"), "%": g("11000 11001 00010 00100 01000 10011 00011"),
        "+": g("00000 00100 00100 11111 00100 00100 00000"), "=": g("00000 00000 11111 00000 11111 00000 00000"),
        "#": g("01010 01010 11111 01010 11111 01010 01010"), "'": g("01100 00100 01000 00000 00000 00000 00000"),
        "!": g("00100 00100 00100 00100 00100 00000 00100"), "?": g("01110 10001 00001 00010 00100 00000 00100"),
        "[": g("01110 01000 01000 01000 01000 01000 01110"), "]": g("01110 00010 00010 00010 00010 00010 01110"),
        "<": g("00010 00100 01000 10000 01000 00100 00010"), ">": g("01000 00100 00010 00001 00010 00100 01000"),
        "³": g("11100 00100 11100 00100 11100 00000 00000"), "·": g("00000 00000 00000 01100 01100 00000 00000"),
    ]
}

extension QASnapshot.Image {
    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` × `scale` image pixels.
    mutating func text(_ text: String, x: Int, y: Int, scale: Int, color: SIMD3<UInt8>) {
        var cx = x
        for character in text {
            let rows = BitmapFont.rows(character)
            for (r, bits) in rows.enumerated() {
                for c in 0..<BitmapFont.width where bits & (1 << (BitmapFont.width - 1 - c)) != 0 {
                    fill(x: cx + c * scale, y: y + r * scale, width: scale, height: scale, color: color)
                }
            }
            cx += (BitmapFont.width + 1) * scale
        }
    }

    /// Fills a rectangle (clipped to the image).
    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: SIMD3<UInt8>) {
        let (x0, x1, y0, y1) = (max(0, x), min(width, x + w), max(0, y), min(height, y + h))
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 {
            for xx in x0..<x1 { pixels[yy * width + xx] = color }
        }
    }

    /// Copies `other` with its top-left corner at (x, y) (clipped).
    mutating func paste(_ other: QASnapshot.Image, x: Int, y: Int) {
        for yy in 0..<other.height where y + yy >= 0 && y + yy < height {
            for xx in 0..<other.width where x + xx >= 0 && x + xx < width {
                pixels[(y + yy) * width + x + xx] = other.pixels[yy * other.width + xx]
            }
        }
    }
}
