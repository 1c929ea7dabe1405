/// numpy's legacy `RandomState` (MT19937) as far as the fingerprint needs it: integer seeding and
/// `choice(n, size, replace=True)` = `randint(0, n, size)` with the masked-rejection bounded integers.
/// Reproducing it makes the dataset fingerprint's intensity statistics bit-identical to nnU-Net's.
public struct LegacyRandomState {
    private var key = [UInt32](repeating: 0, count: 624)
    private var position = 624

    /// `np.random.RandomState(seed)` for an integer seed.
    public init(seed: UInt32) {
        var s = seed
        for i in 0..<624 {
            key[i] = s
            s = 1_812_433_253 &* (s ^ (s >> 30)) &+ UInt32(i + 1)
        }
        position = 624
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (key[i] & 0x8000_0000) | (key[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = key[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            key[i] = v
        }
        position = 0
    }

    public mutating func nextUInt32() -> UInt32 {
        if position >= 624 { twist() }
        var y = key[position]
        position += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// `randint(0, upperBound, size: count)` for `upperBound ≤ 2³²` (numpy's masked rejection).
    public mutating func randomIndices(upperBound: Int, count: Int) -> [Int] {
        precondition(upperBound > 0 && upperBound <= 1 << 32)
        let range = UInt32(upperBound - 1)
        return (0..<count).map { _ in Int(bounded(range)) }
    }

    /// `permutation(n)` (legacy Fisher–Yates from the end; bounded draws by masked rejection on 32 bits),
    /// so `choice(n, k, replace=False)` is `permutation(n).prefix(k)`.
    public mutating func permutation(_ n: Int) -> [Int] {
        precondition(n <= 1 << 32)
        var a = Array(0..<n)
        var i = n - 1
        while i >= 1 {
            a.swapAt(i, Int(bounded(UInt32(i))))
            i -= 1
        }
        return a
    }

    /// A uniform integer in `0...maximum`: numpy's masked rejection on 32-bit draws (none for 0, the
    /// raw draw for the full range) — what both `randint` and the legacy shuffle use.
    mutating func bounded(_ maximum: UInt32) -> UInt32 {
        if maximum == 0 { return 0 }
        if maximum == UInt32.max { return nextUInt32() }
        var mask = maximum
        mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16
        var v: UInt32
        repeat { v = nextUInt32() & mask } while v > maximum
        return v
    }
}
