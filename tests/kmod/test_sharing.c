/*
 * One region, many views: a second mapping, pread/pwrite, a forked child
 * and another process that received the fd over a unix socket all see the
 * same bytes.
 */
#include "common/kmod_test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void second_mapping_sees_writes(void **state)
{
	int fd = kt_region(2 * MiB, 64 * KiB);
	uint8_t *a = kt_map(fd, 0, 2 * MiB), *b = kt_map(fd, 0, 2 * MiB);

	(void)state;
	assert_ptr_not_equal(a, b);
	kt_fill(a, 2 * MiB, 0, 1);
	assert_true(kt_check(b, 2 * MiB, 0, 1));
	kt_fill(b + 4096, 4096, 4096, 2);
	assert_true(kt_check(a + 4096, 4096, 4096, 2));
	munmap(a, 2 * MiB);
	munmap(b, 2 * MiB);
	close(fd);
}

static void pread_sees_mapped_writes_and_pwrite_shows_in_mapping(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 1 * MiB);
	uint8_t *buf = malloc(1 * MiB);
	struct kvmm_region_stat st;

	(void)state;
	kt_fill(p, 1 * MiB, 0, 3);
	/* An unaligned read across chunk boundaries. */
	assert_int_equal(pread(fd, buf, 200 * KiB + 17, 60 * KiB + 3), 200 * KiB + 17);
	assert_true(kt_check(buf, 200 * KiB + 17, 60 * KiB + 3, 3));
	kt_fill(buf, 100 * KiB, 500 * KiB + 1, 4);
	assert_int_equal(pwrite(fd, buf, 100 * KiB, 500 * KiB + 1), 100 * KiB);
	assert_true(kt_check(p + 500 * KiB + 1, 100 * KiB, 500 * KiB + 1, 4));
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.bytes_read, 200 * KiB + 17);
	assert_int_equal(st.bytes_written, 100 * KiB);
	free(buf);
	munmap(p, 1 * MiB);
	close(fd);
}

static void pread_of_empty_chunks_reads_zeros_without_allocating(void **state)
{
	int fd = kt_region(4 * MiB, 1 * MiB);
	uint8_t *buf = malloc(4 * MiB);
	struct kvmm_region_stat st;

	(void)state;
	memset(buf, 0xaa, 4 * MiB);
	assert_int_equal(pread(fd, buf, 4 * MiB, 0), 4 * MiB);
	assert_true(kt_all_zero(buf, 4 * MiB));
	assert_int_equal(kt_stat(fd, &st), 0);
	assert_int_equal(st.resident_bytes, 0);
	/* At and past the end: EOF for reads, ENOSPC for writes. */
	assert_int_equal(pread(fd, buf, 10, 4 * MiB), 0);
	assert_int_equal(pwrite(fd, buf, 10, 4 * MiB), -1);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(pwrite(fd, buf, 10, 4 * MiB - 4), 4);
	assert_int_equal(pread(fd, buf, 10, -1), -1);
	assert_int_equal(errno, EINVAL);
	free(buf);
	close(fd);
}

static void pwrite_from_a_mapping_of_the_same_region(void **state)
{
	/* The source buffer faults on the region while pwrite copies into it. */
	int fd = kt_region(4 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 4 * MiB);

	(void)state;
	kt_fill(p, 1 * MiB, 0, 6);
	assert_int_equal(pwrite(fd, p, 1 * MiB, 2 * MiB), 1 * MiB);
	assert_true(kt_check(p + 2 * MiB, 1 * MiB, 0, 6));
	/* And reading into an untouched part of the same mapping. */
	assert_int_equal(pread(fd, p + 3 * MiB, 1 * MiB, 0), 1 * MiB);
	assert_true(kt_check(p + 3 * MiB, 1 * MiB, 0, 6));
	munmap(p, 4 * MiB);
	close(fd);
}

static void pread_into_bad_buffer_gives_efault(void **state)
{
	int fd = kt_region(1 * MiB, 64 * KiB);
	/* An address no process has mapped, hidden from the compiler's checks. */
	void *volatile bad = (void *)8;

	(void)state;
	assert_int_equal(pread(fd, bad, 4096, 0), -1);
	assert_int_equal(errno, EFAULT);
	assert_int_equal(pwrite(fd, bad, 4096, 0), -1);
	assert_int_equal(errno, EFAULT);
	close(fd);
}

static void forked_child_shares_the_memory(void **state)
{
	int fd = kt_region(2 * MiB, 64 * KiB);
	uint8_t *p = kt_map(fd, 0, 2 * MiB);
	int status;
	pid_t pid;

	(void)state;
	kt_fill(p, 1 * MiB, 0, 7);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		/* Child: sees the parent's data, writes the second half. */
		if (!kt_check(p, 1 * MiB, 0, 7))
			_exit(2);
		kt_fill(p + 1 * MiB, 1 * MiB, 1 * MiB, 8);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(kt_check(p + 1 * MiB, 1 * MiB, 1 * MiB, 8));
	munmap(p, 2 * MiB);
	close(fd);
}

static int send_fd(int sock, int fd)
{
	char dummy = 'x', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char dummy, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &dummy, .iov_len = 1};
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

static void fd_passed_over_unix_socket_shares_the_region(void **state)
{
	int sv[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		/* Receiver: never had the region before; maps it and checks. */
		int fd = recv_fd(sv[1]);
		uint8_t *p;
		char ok;

		if (fd < 0)
			_exit(2);
		p = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED || !kt_check(p, 4 * MiB, 0, 9))
			_exit(3);
		kt_fill(p, 64 * KiB, 0, 10);
		ok = 1;
		if (write(sv[1], &ok, 1) != 1)
			_exit(4);
		_exit(0);
	}
	{
		/* Sender: creates, fills, passes, closes its own fd. */
		int fd = kt_region(4 * MiB, 64 * KiB);
		uint8_t *p = kt_map(fd, 0, 4 * MiB);
		char ok = 0;

		kt_fill(p, 4 * MiB, 0, 9);
		assert_int_equal(send_fd(sv[0], fd), 0);
		close(fd);
		assert_int_equal(read(sv[0], &ok, 1), 1);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(kt_check(p, 64 * KiB, 0, 10));
		munmap(p, 4 * MiB);
	}
	close(sv[0]);
	close(sv[1]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(second_mapping_sees_writes),
	    cmocka_unit_test(pread_sees_mapped_writes_and_pwrite_shows_in_mapping),
	    cmocka_unit_test(pread_of_empty_chunks_reads_zeros_without_allocating),
	    cmocka_unit_test(pwrite_from_a_mapping_of_the_same_region),
	    cmocka_unit_test(pread_into_bad_buffer_gives_efault),
	    cmocka_unit_test(forked_child_shares_the_memory),
	    cmocka_unit_test(fd_passed_over_unix_socket_shares_the_region),
	};

	T_LIST(argc, argv, T_GROUP(tests));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
