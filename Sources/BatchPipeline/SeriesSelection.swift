import DICOMImport
import Foundation
import SiteProfile

/// Rule-based, deterministic choice of the input series of a study (spec §1.3, R-RD-04): every candidate
/// is either chosen or rejected with the condition it failed; ties go to the stack with most slices,
/// then the smallest slice spacing, then the lowest Series Number, then UID order.
public enum SeriesSelection {
    public struct Outcome: Sendable {
        public var chosen: ImageStack?
        public var rule: String
        public var rejected: [(series: String, reason: String)]
    }

    public static func select(_ stacks: [ImageStack], rules: CaseProfile.Selection) -> Outcome {
        var candidates: [ImageStack] = []
        var rejected: [(String, String)] = []
        var rule: [String] = []
        if let m = rules.modality { rule.append("Modality=\(m)") }
        if let o = rules.orientation { rule.append("orientation=\(o)") }
        rule.append("slices≥\(rules.minimumSlices)")
        if let t = rules.sliceThickness { rule.append("SliceThickness∈[\(t.lowerBound), \(t.upperBound)]") }
        if let d = rules.seriesDescription { rule.append("SeriesDescription~/\(d)/") }
        let regex = rules.seriesDescription.flatMap { try? NSRegularExpression(pattern: $0, options: [.caseInsensitive]) }
        for stack in stacks {
            let id = stack.seriesInstanceUID.isEmpty ? "(empty UID)" : stack.seriesInstanceUID
            if stack.geometry == nil { rejected.append((id, "no geometry: \(stack.missingGeometry ?? "")")); continue }
            if let m = rules.modality, stack.modality.uppercased() != m { rejected.append((id, "Modality \(stack.modality) ≠ \(m)")); continue }
            if let o = rules.orientation, stack.orientationLabel != o { rejected.append((id, "orientation \(stack.orientationLabel) ≠ \(o)")); continue }
            if stack.slices.count < rules.minimumSlices {
                rejected.append((id, "\(stack.slices.count) slice(s) < \(rules.minimumSlices)")); continue
            }
            if let range = rules.sliceThickness {
                let thickness = stack.instances.first?.frames.first?.sliceThickness
                guard let t = thickness, range.contains(t) else {
                    rejected.append((id, "SliceThickness \(thickness.map { "\($0)" } ?? "absent") outside [\(range.lowerBound), \(range.upperBound)]")); continue
                }
            }
            if let regex {
                let d = stack.seriesDescription
                if regex.firstMatch(in: d, range: NSRange(d.startIndex..., in: d)) == nil {
                    rejected.append((id, "SeriesDescription does not match")); continue
                }
            }
            candidates.append(stack)
        }
        candidates.sort { a, b in
            let sa = a.geometry?.meanStep ?? .infinity, sb = b.geometry?.meanStep ?? .infinity
            return (-a.slices.count, sa, a.seriesNumber ?? Int.max, a.seriesInstanceUID)
                < (-b.slices.count, sb, b.seriesNumber ?? Int.max, b.seriesInstanceUID)
        }
        for other in candidates.dropFirst() {
            rejected.append((other.seriesInstanceUID, "matched, but another series ranks first (more slices / finer spacing / lower number)"))
        }
        return Outcome(chosen: candidates.first, rule: rule.joined(separator: ", "), rejected: rejected)
    }
}
