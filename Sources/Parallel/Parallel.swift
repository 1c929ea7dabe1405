import Dispatch
import Foundation

/// Work spread over the machine's cores, the two shapes the code base uses: a map whose elements are computed
/// independently (each may throw; the first error in index order is rethrown), and a loop over contiguous
/// chunks of an index range.
///
/// ```swift
/// let contours = try Parallel.map(structures.count) { r in try trace(structures[r]) }
/// Parallel.chunks(voxels.count, chunk: 1 << 16) { range in for i in range { out[i] = f(i) } }
/// ```
public enum Parallel {
    /// `body(0) … body(count - 1)` in parallel, results in index order.
    public static func map<T>(_ count: Int, _ body: (Int) throws -> T) throws -> [T] {
        guard count > 0 else { return [] }
        let slots = Slots<T>(count: count)
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: count) { i in
                slots.set(i, Result { try box.value(i) })
            }
        }
        return try slots.values()
    }

    /// `body` over `0..<count` cut into ranges of `chunk` elements, in parallel.
    public static func chunks(_ count: Int, chunk: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let size = max(1, chunk)
        let pieces = (count + size - 1) / size
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: pieces) { c in box.value((c * size)..<min(count, (c + 1) * size)) }
        }
    }

    final class Slots<T>: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Result<T, Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ result: Result<T, Error>) {
            lock.lock()
            results[i] = result
            lock.unlock()
        }
        func values() throws -> [T] { try results.map { try $0!.get() } }
    }

    struct UncheckedBox<T>: @unchecked Sendable {
        let value: T
        init(_ value: T) { self.value = value }
    }
}
