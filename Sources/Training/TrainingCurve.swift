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
        series(log.trainLosses, yLoss, SIMD3(31, 119, 180))
        series(log.validationLosses, yLoss, SIMD3(214, 39, 40))
        series(log.meanForegroundDice, yDice, SIMD3(44, 160, 44), dashed: true)
        series(log.emaForegroundDice, yDice, SIMD3(44, 160, 44))
        return QASnapshot.png(QASnapshot.Image(width: width, height: height, pixels: pixels))
    }
}
