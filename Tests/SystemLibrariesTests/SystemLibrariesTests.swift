import CBLAS
import CDCMTK
import CDNNL
import COpenJPEG
import CSQLite
import Testing

/// The Debian libraries Ops/setup.sh installs are found, linked and callable.
struct SystemLibrariesTests {
    @Test func versions() {
        #expect(String(cString: nnseg_dcm_dcmtk_version()) == "3.6.7")
        let dnnl = dnnl_version().pointee
        #expect(dnnl.major == 2 && dnnl.minor >= 6)
        #expect(String(cString: opj_version()).hasPrefix("2."))
        #expect(sqlite3_libversion_number() >= 3_040_000)
    }

    /// A tiny single-precision GEMM through OpenBLAS against the plain triple loop.
    @Test func openBLASGemm() {
        let m = 3, n = 2, k = 4
        let a: [Float] = (0..<(m * k)).map { Float($0) * 0.5 - 1 }
        let b: [Float] = (0..<(k * n)).map { Float($0 % 3) - 0.25 }
        var c = [Float](repeating: 0, count: m * n)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n),
                    0, &c, Int32(n))
        for i in 0..<m {
            for j in 0..<n {
                let expected = (0..<k).reduce(Float(0)) { $0 + a[i * k + $1] * b[$1 * n + j] }
                #expect(abs(c[i * n + j] - expected) < 1e-5)
            }
        }
    }
}
