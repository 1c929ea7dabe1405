import Foundation
import JSON

/// nnU-Net's cross-validation splits (spec §6.2): 5-fold KFold over the sorted case identifiers with
/// numpy's legacy `RandomState(12345).shuffle`, written as `splits_final.json`.
public enum CrossValidation {
    public static let seed: UInt32 = 12345
    public static let folds = 5

    public struct Split: Sendable, Equatable {
        public var train: [String]
        public var val: [String]
        public init(train: [String], val: [String]) {
            self.train = train
            self.val = val
        }
    }

    /// sklearn `KFold(n_splits: 5, shuffle: true, random_state: 12345)` over `identifiers` sorted: fold `f`'s
    /// validation set is the f-th consecutive block of the shuffled indices (the first n % 5 blocks one
    /// longer); both lists in ascending order.
    public static func fiveFold(_ identifiers: [String]) throws -> [Split] {
        let keys = identifiers.sorted()
        guard keys.count >= folds else {
            throw DatasetPreprocessingError(file: "splits_final.json", detail: "5-fold cross-validation needs at least 5 cases, the dataset has \(keys.count)")
        }
        var rng = LegacyRandomState(seed: seed)
        let shuffled = rng.permutation(keys.count)
        var start = 0
        return (0..<folds).map { f in
            let size = keys.count / folds + (f < keys.count % folds ? 1 : 0)
            let val = Set(shuffled[start..<(start + size)])
            start += size
            return Split(train: keys.indices.filter { !val.contains($0) }.map { keys[$0] }, val: val.sorted().map { keys[$0] })
        }
    }

    /// A fold beyond the split file: a random 80:20 split with `RandomState(12345 + fold)` (training
    /// cases in drawn order, validation ascending), as nnU-Net does.
    public static func randomSplit(_ identifiers: [String], fold: Int) -> Split {
        let keys = identifiers.sorted()
        var rng = LegacyRandomState(seed: seed &+ UInt32(fold))
        let train = Array(rng.permutation(keys.count).prefix(Int(Double(keys.count) * 0.8)))
        let chosen = Set(train)
        return Split(train: train.map { keys[$0] }, val: keys.indices.filter { !chosen.contains($0) }.map { keys[$0] })
    }

    /// `splits_final.json` as nnU-Net writes it (indent 4).
    public static func json(_ splits: [Split]) -> Data {
        let value = JSONValue.array(splits.map {
            .object([("train", .array($0.train.map(JSONValue.string))), ("val", .array($0.val.map(JSONValue.string)))])
        })
        return Data(value.pythonText().utf8)
    }

    /// Reads a `splits_final.json`, checking that every identifier is a case of the dataset.
    public static func read(_ url: URL, cases: Set<String>) throws -> [Split] {
        struct Entry: Decodable { var train: [String]; var val: [String] }
        let entries: [Entry]
        do { entries = try JSONDecoder().decode([Entry].self, from: Data(contentsOf: url)) } catch {
            throw DatasetPreprocessingError(file: url.path, detail: "not a list of {train, val} objects (\(error))")
        }
        for (f, e) in entries.enumerated() {
            let unknown = Set(e.train + e.val).subtracting(cases)
            if !unknown.isEmpty {
                throw DatasetPreprocessingError(file: url.path, detail: "fold \(f) names \(unknown.count) case(s) not in the dataset, e.g. \(unknown.sorted().prefix(3))")
            }
        }
        return entries.map { Split(train: $0.train, val: $0.val) }
    }
}
