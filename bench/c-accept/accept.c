/*
 * accept: the "C limit" reference for flowgate's benchmarks. Binds one NFQUEUE over raw
 * netlink (the same wire format as native/, see native/README.md), drains every burst of
 * packets and accepts the whole burst with a single NFQNL_MSG_VERDICT_BATCH. Prints its
 * counters on SIGTERM or SIGINT and exits 0.
 *
 *   usage: accept [--no-gso] [--fail-open] [--maxlen N] [--data-mark MARK] [--log-group G] QUEUE
 *
 * --data-mark MARK: flowgate's decision at no cost. Packets without TCP payload are accepted;
 * each packet with payload is repeated with MARK (one verdict per packet, in one send), so with
 * flowgate's gateway rules a flow is queued until its first data, like a flow flowgate allows
 * on its first data packet: the floor of flowgate's rule layout, without any inspection.
 *
 * --log-group G: also bind NFLOG group G, where flowgate's rules log the bare SYNs and SYN-ACKs
 * they accept without queueing, and read (and count) every copy before each burst of the
 * queue, as flowgate's binding does: the same rules then cost the same here as for flowgate.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECV_MAX (65536 + 8192) /* copy_range (<= 65531) plus attributes */
#define BURST_MAX 1024          /* packets drained before one batch verdict */
#define RCVBUF (8 << 20)

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static unsigned long long packets, bursts, bytes, enobufs, verdict_msgs, errors, logged, log_enobufs;

/* --data-mark: the packets of a burst, in order, and whether each carries TCP payload. */
#define IDS_MAX (BURST_MAX * 64)
static uint32_t ids[IDS_MAX];
static uint8_t has_data[IDS_MAX];
static size_t nids;

/* TCP payload length of an IPv4 or IPv6 (no extension headers) packet; 0 when unknown. */
static size_t tcp_payload(const unsigned char *p, size_t len) {
	if (len < 1) return 0;
	size_t l3, total;
	if ((p[0] >> 4) == 4) {
		if (len < 20) return 0;
		l3 = (size_t)(p[0] & 15) * 4;
		total = ((size_t)p[2] << 8) | p[3];
	} else if ((p[0] >> 4) == 6) {
		if (len < 40 || p[6] != 6) return 0;
		l3 = 40;
		total = 40 + (((size_t)p[4] << 8) | p[5]);
	} else return 0;
	if (len < l3 + 13) return 0;
	size_t l4 = (size_t)(p[l3 + 12] >> 4) * 4;
	return total > l3 + l4 ? total - l3 - l4 : 0;
}

static size_t put_attr(char *buf, size_t off, uint16_t type, const void *data, size_t len) {
	struct nlattr nla = { .nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type };
	memcpy(buf + off, &nla, sizeof nla);
	memcpy(buf + off + NLA_HDRLEN, data, len);
	memset(buf + off + NLA_HDRLEN + len, 0, NLA_ALIGN(NLA_HDRLEN + len) - NLA_HDRLEN - len);
	return off + NLA_ALIGN(NLA_HDRLEN + len);
}

static size_t put_be32(char *buf, size_t off, uint16_t type, uint32_t v) {
	v = htonl(v);
	return put_attr(buf, off, type, &v, sizeof v);
}

/* nlmsghdr + nfgenmsg of subsystem `subsys`; nlmsg_len is patched by finish(). */
static size_t put_head_of(char *buf, uint8_t subsys, uint8_t msg, uint16_t flags, uint32_t seq, uint16_t queue) {
	struct nlmsghdr nlh = { 0 };
	nlh.nlmsg_type = (subsys << 8) | msg;
	nlh.nlmsg_flags = NLM_F_REQUEST | flags;
	nlh.nlmsg_seq = seq;
	memcpy(buf, &nlh, sizeof nlh);
	struct nfgenmsg nfg = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0, .res_id = htons(queue) };
	memcpy(buf + NLMSG_HDRLEN, &nfg, sizeof nfg);
	return NLMSG_HDRLEN + NLMSG_ALIGN(sizeof nfg);
}

static size_t put_head(char *buf, uint8_t msg, uint16_t flags, uint32_t seq, uint16_t queue) {
	return put_head_of(buf, NFNL_SUBSYS_QUEUE, msg, flags, seq, queue);
}

static size_t finish(char *buf, size_t len) {
	uint32_t l = (uint32_t)len;
	memcpy(buf, &l, sizeof l); /* nlmsghdr.nlmsg_len */
	return len;
}

static int send_msg(int fd, const char *buf, size_t len) {
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	for (;;) {
		if (sendto(fd, buf, len, 0, (struct sockaddr *)&kernel, sizeof kernel) >= 0) return 0;
		if (errno == EINTR) continue;
		if (errno == EAGAIN || errno == ENOBUFS) { usleep(1000); continue; }
		return -1;
	}
}

/* Waits for the ack (NLMSG_ERROR, error 0) answering the config message of seq 1; 0 or errno.
 * Packets before it are left in the socket: the main loop reads them, as nothing here needs to
 * keep them apart, and one coming first means the bind worked. */
static int await_ack(int fd) {
	char rx[8192];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 2000) <= 0) return ETIMEDOUT;
	ssize_t n = recv(fd, rx, sizeof rx, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0) return errno;
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)rx;
	if ((size_t)n >= NLMSG_HDRLEN + sizeof(int) && nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_seq == 1) {
		int err;
		memcpy(&err, rx + NLMSG_HDRLEN, sizeof err);
		recv(fd, rx, sizeof rx, MSG_DONTWAIT);
		return -err;
	}
	return 0;
}

static int bind_queue(int fd, uint16_t queue, uint32_t maxlen, int gso, int fail_open) {
	char buf[256];
	size_t off = put_head(buf, NFQNL_MSG_CONFIG, NLM_F_ACK, 1, queue);
	struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_UNSPEC) };
	off = put_attr(buf, off, NFQA_CFG_CMD, &cmd, sizeof cmd);
	struct nfqnl_msg_config_params params = { .copy_range = htonl(0xffff), .copy_mode = NFQNL_COPY_PACKET };
	off = put_attr(buf, off, NFQA_CFG_PARAMS, &params, sizeof params);
	off = put_be32(buf, off, NFQA_CFG_QUEUE_MAXLEN, maxlen);
	off = put_be32(buf, off, NFQA_CFG_MASK, NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN);
	off = put_be32(buf, off, NFQA_CFG_FLAGS, (gso ? NFQA_CFG_F_GSO : 0) | (fail_open ? NFQA_CFG_F_FAIL_OPEN : 0));
	if (send_msg(fd, buf, finish(buf, off)) < 0) return errno;
	return await_ack(fd);
}

static int bind_log(int fd, uint16_t group) {
	char buf[128];
	size_t off = put_head_of(buf, NFNL_SUBSYS_ULOG, NFULNL_MSG_CONFIG, NLM_F_ACK, 1, group);
	struct nfulnl_msg_config_cmd cmd = { .command = NFULNL_CFG_CMD_BIND };
	off = put_attr(buf, off, NFULA_CFG_CMD, &cmd, sizeof cmd);
	struct nfulnl_msg_config_mode mode = { .copy_range = htonl(256), .copy_mode = NFULNL_COPY_PACKET };
	off = put_attr(buf, off, NFULA_CFG_MODE, &mode, sizeof mode);
	off = put_be32(buf, off, NFULA_CFG_QTHRESH, 1);
	if (send_msg(fd, buf, finish(buf, off)) < 0) return errno;
	return await_ack(fd);
}

/* Reads every copy waiting on the log socket (one per datagram at qthreshold 1). */
static void drain_log(int fd, char *rx, size_t size) {
	for (;;) {
		ssize_t n = recv(fd, rx, size, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == ENOBUFS) { log_enobufs++; continue; }
			return;
		}
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)rx;
		if ((size_t)n >= NLMSG_HDRLEN && nlh->nlmsg_type == ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) logged++;
	}
}

/* Walks one datagram; returns the highest packet id seen (0 when none). */
static uint32_t scan(const char *buf, size_t len) {
	uint32_t max_id = 0;
	size_t off = 0;
	/* Compare by adding, never by subtracting: offsets may pass the end by the alignment
	 * padding, and size_t subtraction would wrap around. */
	while (off + NLMSG_HDRLEN <= len) {
		struct nlmsghdr nlh;
		memcpy(&nlh, buf + off, sizeof nlh);
		if (nlh.nlmsg_len < NLMSG_HDRLEN || nlh.nlmsg_len > len - off) break;
		if (nlh.nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
			size_t a = off + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
			size_t end = off + nlh.nlmsg_len;
			/* The kernel sets nlmsg_len to the unpadded end of NFQA_PAYLOAD, the last
			 * attribute, so a += NLA_ALIGN(...) can land up to 3 bytes past end. */
			while (a + NLA_HDRLEN <= end) {
				struct nlattr nla;
				memcpy(&nla, buf + a, sizeof nla);
				if (nla.nla_len < NLA_HDRLEN || nla.nla_len > end - a) break;
				uint16_t type = nla.nla_type & NLA_TYPE_MASK;
				if (type == NFQA_PACKET_HDR && nla.nla_len >= NLA_HDRLEN + 4) {
					uint32_t id; /* nfqnl_msg_packet_hdr.packet_id, big-endian */
					memcpy(&id, buf + a + NLA_HDRLEN, 4);
					id = ntohl(id);
					if (id > max_id) max_id = id;
					packets++;
					if (nids < IDS_MAX) { ids[nids] = id; has_data[nids++] = 0; }
				} else if (type == NFQA_PAYLOAD) {
					bytes += nla.nla_len - NLA_HDRLEN;
					if (nids > 0) has_data[nids - 1] = tcp_payload((const unsigned char *)buf + a + NLA_HDRLEN, nla.nla_len - NLA_HDRLEN) > 0;
				}
				a += NLA_ALIGN(nla.nla_len);
			}
		} else if (nlh.nlmsg_type == NLMSG_ERROR) {
			int err;
			if (nlh.nlmsg_len >= NLMSG_HDRLEN + sizeof err) {
				memcpy(&err, buf + off + NLMSG_HDRLEN, sizeof err);
				if (err != 0) errors++;
			}
		}
		off += NLMSG_ALIGN(nlh.nlmsg_len);
		if (off >= len) break;
	}
	return max_id;
}

int main(int argc, char **argv) {
	int gso = 1, fail_open = 0, data_mark_set = 0;
	uint32_t data_mark = 0;
	uint32_t maxlen = 65536;
	long queue = -1, log_group = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--no-gso")) gso = 0;
		else if (!strcmp(argv[i], "--fail-open")) fail_open = 1;
		else if (!strcmp(argv[i], "--maxlen") && i + 1 < argc) maxlen = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--data-mark") && i + 1 < argc) { data_mark = (uint32_t)strtoul(argv[++i], NULL, 0); data_mark_set = 1; }
		else if (!strcmp(argv[i], "--log-group") && i + 1 < argc) log_group = strtol(argv[++i], NULL, 10);
		else queue = strtol(argv[i], NULL, 10);
	}
	if (queue < 0 || queue > 65535 || log_group < -1 || log_group > 65535) {
		fprintf(stderr, "usage: %s [--no-gso] [--fail-open] [--maxlen N] [--data-mark MARK] [--log-group G] QUEUE\n", argv[0]);
		return 2;
	}

	struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: poll() returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0) { perror("socket"); return 1; }
	int size = RCVBUF;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	int lfd = -1;
	if (log_group >= 0) {
		lfd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
		if (lfd < 0) { perror("socket"); return 1; }
		if (setsockopt(lfd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
			setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
		int lerr = bind_log(lfd, (uint16_t)log_group);
		if (lerr != 0) { fprintf(stderr, "binding NFLOG group %ld: %s\n", log_group, strerror(lerr)); return 1; }
	}
	int err = bind_queue(fd, (uint16_t)queue, maxlen, gso, fail_open);
	if (err != 0) { fprintf(stderr, "binding queue %ld: %s\n", queue, strerror(err)); return 1; }
	fprintf(stderr, "accept: queue %ld bound (gso %s)\n", queue, gso ? "on" : "off");

	static char rx[RECV_MAX];
	char vbuf[64];
	static char mbuf[IDS_MAX * 48];
	while (!stop) {
		struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = lfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR) continue;
			perror("poll");
			return 1;
		}
		if (lfd >= 0) drain_log(lfd, rx, sizeof rx); /* first, as flowgate's binding does */
		uint32_t max_id = 0;
		nids = 0;
		for (int k = 0; k < BURST_MAX; k++) {
			ssize_t n = recv(fd, rx, sizeof rx, MSG_DONTWAIT);
			if (n < 0) {
				if (errno == ENOBUFS) { enobufs++; continue; }
				break; /* EAGAIN (drained) or EINTR */
			}
			uint32_t id = scan(rx, (size_t)n);
			if (id > max_id) max_id = id;
		}
		if (max_id == 0) continue;
		bursts++;
		if (data_mark_set) {
			size_t m = 0;
			for (size_t i = 0; i < nids; i++) {
				char *msg = mbuf + m;
				size_t off = put_head(msg, NFQNL_MSG_VERDICT, 0, 0, (uint16_t)queue);
				struct nfqnl_msg_verdict_hdr vh = { .verdict = htonl(has_data[i] ? NF_REPEAT : NF_ACCEPT), .id = htonl(ids[i]) };
				off = put_attr(msg, off, NFQA_VERDICT_HDR, &vh, sizeof vh);
				if (has_data[i]) off = put_be32(msg, off, NFQA_MARK, data_mark);
				m += NLMSG_ALIGN(finish(msg, off));
			}
			if (send_msg(fd, mbuf, m) < 0) errors++;
			else verdict_msgs += nids;
			continue;
		}
		/* NFQNL_MSG_VERDICT_BATCH: NFQA_VERDICT_HDR {verdict, id} accepts every queued id <= id. */
		size_t off = put_head(vbuf, NFQNL_MSG_VERDICT_BATCH, 0, 0, (uint16_t)queue);
		struct nfqnl_msg_verdict_hdr vh = { .verdict = htonl(NF_ACCEPT), .id = htonl(max_id) };
		off = put_attr(vbuf, off, NFQA_VERDICT_HDR, &vh, sizeof vh);
		if (send_msg(fd, vbuf, finish(vbuf, off)) < 0) errors++;
		else verdict_msgs++;
	}

	char ubuf[64]; /* NFQNL_CFG_CMD_UNBIND */
	size_t off = put_head(ubuf, NFQNL_MSG_CONFIG, 0, 2, (uint16_t)queue);
	struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_UNBIND, .pf = htons(AF_UNSPEC) };
	off = put_attr(ubuf, off, NFQA_CFG_CMD, &cmd, sizeof cmd);
	send_msg(fd, ubuf, finish(ubuf, off));
	close(fd);
	if (lfd >= 0) close(lfd); /* closing the socket unbinds the group */
	printf("packets=%llu bursts=%llu bytes=%llu verdict_msgs=%llu enobufs=%llu errors=%llu logged=%llu log_enobufs=%llu\n",
	       packets, bursts, bytes, verdict_msgs, enobufs, errors, logged, log_enobufs);
	return 0;
}
