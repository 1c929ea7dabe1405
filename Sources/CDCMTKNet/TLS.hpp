// Builds a DCMTK TLS transport layer from nnseg's TLS settings (shared by the SCP and the SCU).
#pragma once
#include "nnseg_dcmnet.h"
#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include <string>

namespace nnseg {

/// A configured layer, or NULL with `error` set (the file and what is wrong with it).
inline DcmTLSTransportLayer *makeTLSLayer(T_ASC_NetworkRole role, const nnseg_tls_config *tls, std::string &error) {
    auto *layer = new DcmTLSTransportLayer(role, NULL, OFTrue);
    auto fail = [&](const std::string &text) -> DcmTLSTransportLayer * { error = text; delete layer; return NULL; };
    if (layer->setTLSProfile(TSP_Profile_BCP195).bad() || layer->activateCipherSuites().bad()) return fail("TLS: cannot set the BCP 195 profile");
    for (int i = 0; i < tls->trusted_count; ++i) {
        if (layer->addTrustedCertificateFile(tls->trusted[i], DCF_Filetype_PEM).bad())
            return fail(std::string("TLS: cannot read the trusted certificate ") + tls->trusted[i]);
    }
    if (tls->certificate && *tls->certificate) {
        if (layer->setPrivateKeyFile(tls->private_key ? tls->private_key : "", DCF_Filetype_PEM).bad())
            return fail(std::string("TLS: cannot read the private key ") + (tls->private_key ? tls->private_key : "(none)"));
        if (layer->setCertificateFile(tls->certificate, DCF_Filetype_PEM).bad())
            return fail(std::string("TLS: cannot read the certificate ") + tls->certificate);
        if (!layer->checkPrivateKeyMatchesCertificate()) return fail(std::string("TLS: the private key does not match ") + tls->certificate);
    }
    layer->setCertificateVerification(tls->verify_peer ? DCV_requireCertificate : DCV_ignoreCertificate);
    return layer;
}

}  // namespace nnseg
