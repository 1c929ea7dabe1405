import Foundation
import Testing
import TestSupport
@testable import DICOMExport

/// #24: DS values are written digit by digit (String(format:) dominated an RTSTRUCT of 10⁶ points); the text is
/// the same as the formatted one, and always a valid DS value of at most 16 bytes.
struct DecimalStringTests {
    @Test func digitByDigitEqualsTheFormattedText() {
        var random = SplitMix(state: 2424)
        var differing = 0
        let fixed: [Double] = [0, -0.0, 0.5, -0.5, 1e-7, -4e-7, -6e-7, 123.456789, -250.1234565, 99_999_999.9999994, 1e8, -1e12, 3e-9, 0.1 + 0.2]
        var values = fixed
        for _ in 0..<200_000 {
            let scale = [1.0, 10, 100, 1000, 1e5, 1e7][Int.random(in: 0..<6, using: &random)]
            values.append(Double.random(in: -scale...scale, using: &random))
        }
        for v in values {
            let fast = DecimalString.format(v), slow = DecimalString.formatted(v)
            #expect(fast.utf8.count <= 16 && Double(fast) != nil, "\(v) → \(fast)")
            if fast != slow {
                // Only a tie rounded the other way in the sixth decimal may differ.
                differing += 1
                #expect(abs((Double(fast)! * 1e6).rounded() - (Double(slow)! * 1e6).rounded()) <= 1, "\(v): \(fast) vs \(slow)")
            }
        }
        #expect(differing <= values.count / 10_000, "\(differing) of \(values.count) differ in the last digit")
        print("DS formatting: \(differing) of \(values.count) values differ from String(format:) by one in the sixth decimal (ties)")
        #expect(DecimalString.format(-4e-7) == "0" && DecimalString.format(-250.5) == "-250.5" && DecimalString.format(12) == "12")
    }
}
