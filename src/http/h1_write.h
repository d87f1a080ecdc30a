/* Serialising HTTP/1.1 header fields, shared by the server and client codecs. */
#ifndef SG_HTTP_H1_WRITE_H
#define SG_HTTP_H1_WRITE_H

#include "core/buf.h"
#include "core/str.h"

/* Appends "Name: value\r\n" to q in one reservation. */
void sg_h1_write_header(sg_outq *q, sg_str name, sg_str value);

#endif
