// nnseg's C interface to DCMTK's network layer (dcmnet): a storage SCP that spools what it receives, one
// folder per association. Every entry point catches every C++ exception and returns an error code.
#ifndef NNSEG_DCMNET_H
#define NNSEG_DCMNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// TLS for an association (DICOM's secure transport, OpenSSL through DCMTK's dcmtls). PEM files only.
typedef struct nnseg_tls_config {
    const char *certificate;              // our certificate; NULL: none (an SCU without client authentication)
    const char *private_key;              // its unencrypted private key
    const char *const *trusted;           // CA certificates the peer's certificate must chain to
    int trusted_count;
    int verify_peer;                      // 1: the peer must present a certificate signed by a trusted CA
} nnseg_tls_config;

typedef struct nnseg_scp_config {
    const char *ae_title;            // our AE title (called AE must match)
    const char *bind_address;        // IPv4 address to listen on ("127.0.0.1", "0.0.0.0")
    int port;
    const char *const *allowed_callers;   // calling AE titles accepted; count 0: any
    int allowed_caller_count;
    const char *const *allowed_hosts;     // peer IPv4 addresses accepted; count 0: any
    int allowed_host_count;
    int max_associations;            // concurrent associations; more are rejected (transient, local limit)
    uint32_t max_pdu;                // maximum receive PDU length
    int64_t free_disk_floor_bytes;   // under this free space a store answers A700 (out of resources)
    const char *spool;               // folder: one sub-folder per association
    int acse_timeout;                // seconds
    int dimse_timeout;               // seconds; 0: none
    const nnseg_tls_config *tls;     // NULL: plain TCP
    // Called (from any association's thread, serialised) with one event as a JSON object.
    void (*event)(void *context, const char *json);
    void *event_context;
} nnseg_scp_config;

/// Listens and serves until *stop becomes non-zero (checked twice a second). Returns 0 after a stop,
/// non-zero with `error` filled when the port cannot be opened.
int nnseg_scp_run(const nnseg_scp_config *config, volatile int *stop, char *error, size_t error_size);

/// One instance's outcome of a send: its DIMSE status (0 success; 0xB… warnings; others refusals),
/// -1 when it was never sent (the association failed first).
typedef struct nnseg_scu_result {
    int32_t status;
    char sop_instance_uid[65];
} nnseg_scu_result;

/// Sends `count` DICOM files in one association (C-STORE SCU). Returns 0 when the association was
/// negotiated and released (each file's status in `results`), non-zero with `error` filled when no
/// association could be made or it broke off (results of files not sent stay -1).
int nnseg_scu_send(const char *calling_ae, const char *called_ae, const char *host, int port, int timeout_seconds,
                   const nnseg_tls_config *tls, const char *const *files, int count, nnseg_scu_result *results,
                   char *error, size_t error_size);

#ifdef __cplusplus
}
#endif
#endif
