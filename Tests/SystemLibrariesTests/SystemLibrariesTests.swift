import CDCMTK
import CDNNL
import COpenJPEG
import Testing

/// The Debian libraries Ops/setup.sh installs are found, linked and callable.
struct SystemLibrariesTests {
    @Test func versions() {
        #expect(String(cString: nnseg_dcm_dcmtk_version()) == "3.6.7")
        let dnnl = dnnl_version().pointee
        #expect(dnnl.major == 2 && dnnl.minor >= 6)
        #expect(String(cString: opj_version()).hasPrefix("2."))
    }
}
