import Foundation
import QASnapshot

/// `progress.png`: training and validation loss (left scale) and pseudo-Dice with its EMA (right scale,
/// 0–1) per epoch, like nnU-Net's plot, drawn without a plotting library.
enum TrainingCurve {
    static let width = 900, height = 420, margin = 40

    static func png(_ log: TrainingLog) -> Data {
        var pixels = [SIMD3<UInt8>](repeating: SIMD3(255, 255, 255), count: width * height)
        let plotW = width - 2 * margin, plotH = height - 2 * margin
        func put(_ x: Int, _ y: Int, _ c: SIMD3<UInt8>) {
            guard x >= 0, x < width, y >= 0, y < height else { return }
            pixels[y * width + x] = c
        }
        func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: SIMD3<UInt8>, dashed: Bool = false) {
            let steps = max(abs(x1 - x0), abs(y1 - y0), 1)
            for s in 0...steps where !dashed || (s / 4) % 2 == 0 {
                let x = x0 + (x1 - x0) * s / steps, y = y0 + (y1 - y0) * s / steps
                put(x, y, c)
                put(x, y + 1, c)
            }
        }
        // Axes and a light grid at Dice 0.25 steps.
        let grey = SIMD3<UInt8>(200, 200, 200), black = SIMD3<UInt8>(0, 0, 0)
        for k in 0...4 {
            let y = margin + plotH - plotH * k / 4
            line(margin, y, margin + plotW, y, k == 0 ? black : grey)
        }
        line(margin, margin, margin, margin + plotH, black)
        line(margin + plotW, margin, margin + plotW, margin + plotH, black)
        let epochs = log.trainLosses.count
        guard epochs > 0 else { return QASnapshot.png(QASnapshot.Image(width: width, height: height, pixels: pixels)) }
        let losses = (log.trainLosses + log.validationLosses).filter(\.isFinite)
        let lo = min(losses.min() ?? -1, -1), hi = max(losses.max() ?? 1, 0.5)
        func x(_ e: Int) -> Int { margin + (epochs == 1 ? plotW / 2 : plotW * e / (epochs - 1)) }
        func yLoss(_ v: Double) -> Int { margin + Int(Double(plotH) * (hi - v) / (hi - lo)) }
        func yDice(_ v: Double) -> Int { margin + Int(Double(plotH) * (1 - min(max(v, 0), 1))) }
        func series(_ values: [Double], _ y: (Double) -> Int, _ c: SIMD3<UInt8>, dashed: Bool = false) {
            for e in 0..<values.count where values[e].isFinite {
                if e > 0, values[e - 1].isFinite { line(x(e - 1), y(values[e - 1]), x(e), y(values[e]), c, dashed: dashed) }
                for d in -2...2 { put(x(e) + d, y(values[e]), c); put(x(e), y(values[e]) + d, c) }
            }
        }
        let blue = SIMD3<UInt8>(31, 119, 180), red = SIMD3<UInt8>(214, 39, 40), green = SIMD3<UInt8>(44, 160, 44)
        series(log.trainLosses, yLoss, blue)
        series(log.validationLosses, yLoss, red)
        series(log.meanForegroundDice, yDice, green, dashed: true)
        series(log.emaForegroundDice, yDice, green)
        // Legend, scales (loss on the left, Dice on the right) and the epoch axis.
        func text(_ string: String, _ x0: Int, _ y0: Int, _ c: SIMD3<UInt8>) {
            for (i, ch) in string.uppercased().enumerated() {
                guard let rows = font[ch] else { continue }
                for (r, bits) in rows.enumerated() {
                    for b in 0..<5 where bits & (1 << (4 - b)) != 0 {
                        for dy in 0..<2 { for dx in 0..<2 { put(x0 + i * 12 + b * 2 + dx, y0 + r * 2 + dy, c) } }
                    }
                }
            }
        }
        let legend: [(String, SIMD3<UInt8>, Bool)] = [("train loss", blue, false), ("val loss", red, false),
                                                      ("pseudo dice", green, true), ("ema dice", green, false)]
        var lx = margin + 8
        for (name, colour, dashed) in legend {
            line(lx, 12, lx + 24, 12, colour, dashed: dashed)
            text(name, lx + 30, 6, colour)
            lx += 30 + name.count * 12 + 24
        }
        text(String(format: "%.2f", hi), 2, margin - 16, black)
        text(String(format: "%.2f", lo), 2, margin + plotH + 4, black)
        text("1.0", width - margin + 4, margin - 7, green)
        text("0.5", width - margin + 4, margin + plotH / 2 - 7, green)
        text("0", width - margin + 4, margin + plotH - 7, green)
        text("epoch", margin + plotW / 2 - 30, height - 18, black)
        text("0", margin - 4, height - 18, black)
        text("\(epochs - 1)", margin + plotW - 12, height - 18, black)
        return QASnapshot.png(QASnapshot.Image(width: width, height: height, pixels: pixels))
    }

    /// A 5×7 bitmap font for the labels (rows top to bottom, bit 4 = leftmost pixel).
    static let font: [Character: [UInt8]] = [
        "A": [14, 17, 17, 31, 17, 17, 17], "C": [14, 17, 16, 16, 16, 17, 14], "D": [30, 17, 17, 17, 17, 17, 30],
        "E": [31, 16, 16, 30, 16, 16, 31], "H": [17, 17, 17, 31, 17, 17, 17], "I": [14, 4, 4, 4, 4, 4, 14],
        "L": [16, 16, 16, 16, 16, 16, 31], "M": [17, 27, 21, 21, 17, 17, 17], "N": [17, 25, 21, 19, 17, 17, 17],
        "O": [14, 17, 17, 17, 17, 17, 14], "P": [30, 17, 17, 30, 16, 16, 16], "R": [30, 17, 17, 30, 20, 18, 17],
        "S": [15, 16, 16, 14, 1, 1, 30], "T": [31, 4, 4, 4, 4, 4, 4], "U": [17, 17, 17, 17, 17, 17, 14],
        "V": [17, 17, 17, 17, 17, 10, 4], "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14],
        "2": [14, 17, 1, 2, 4, 8, 31], "3": [30, 1, 1, 14, 1, 1, 30], "4": [2, 6, 10, 18, 31, 2, 2],
        "5": [31, 16, 30, 1, 1, 17, 14], "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8],
        "8": [14, 17, 17, 14, 17, 17, 14], "9": [14, 17, 17, 15, 1, 2, 12], ".": [0, 0, 0, 0, 0, 12, 12],
        "-": [0, 0, 0, 31, 0, 0, 0],
    ]
}
