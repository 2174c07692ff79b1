# Turn the results channel of the kvmm test VM (see init) into test results.
#
# Variables (awk -v):
#   mode     test or bench
#   live     1: print progress (each result as it arrives) and nothing at the end
#            0: print the failures with their messages and the closing line
#   label    word before the closing line ("kmod: N passed, N failed, N skipped")
#   console  console log, scanned for kernel errors when the kernel log dump is missing
#   timedout 1 when the host killed the VM at its time limit
#   vmlimit  that limit, in seconds
#   verbose  1: live mode prints every line the programs print
#
# Exit status (final mode): 0 when nothing failed, 1 otherwise.

function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	return s
}

function pass(name) {
	npass++
	if (live)
		printf "  PASS  %s\n", name
}

# A skip and why (the last line the test printed before it, or the program
# before it exited 77); the live pass prints each, the final one lists them.
function skip(name, why) {
	nskip++
	if (why == "")
		why = "no reason printed (a test bug: a skip must say why)"
	sname[nskip] = name
	swhy[nskip] = why
	if (live)
		printf "  SKIP  %s: %s\n", name, why
}

# The last line in the buffer of recent program output, without "# " or "skip: ".
function last_line(   j, s) {
	for (j = nbuf; j > 0; j--) {
		s = trim(buf[j])
		sub(/^# */, "", s)
		sub(/^[Ss][Kk][Ii][Pp]([Pp][Ee][Dd])?: */, "", s)
		if (s != "")
			return s
	}
	return ""
}

# A failure; its message grows with addmsg() until the next one.
function fail(name, msg) {
	nfail++
	fname[nfail] = name
	fmsg[nfail] = msg
	msgidx = nfail
	if (live)
		printf "  FAIL  %s%s\n", name, (msg != "" && msg !~ /\n/) ? ": " msg : ""
}

function addmsg(line) {
	if (msgidx > 0 && line != "")
		fmsg[msgidx] = fmsg[msgidx] (fmsg[msgidx] != "" ? "\n" : "") line
}

# Recent lines of the running program, used as a failure's message.
function keep(line) {
	nbuf++
	buf[nbuf] = line
	if (nbuf > 40) {
		for (j = 1; j < nbuf; j++)
			buf[j] = buf[j + 1]
		nbuf--
	}
}

function buffered(   s, j) {
	s = ""
	for (j = 1; j <= nbuf; j++)
		s = s (j > 1 ? "\n" : "") buf[j]
	nbuf = 0
	return s
}

function kernel_bad(line) {
	# kmemleak's count of new leaks: the leaks themselves are judged below.
	if (line ~ /kmemleak: [0-9]+ new suspected memory leaks/)
		return 0
	return line ~ /WARNING:|BUG:|Oops|general protection fault|sleeping function called|list_add corruption|list_del corruption|slab corruption|Redzone|Poison overwritten|Object padding|KASAN|possible circular locking|possible recursive locking|inconsistent lock state|kernel BUG|refcount_t:|UBSAN|kmemleak|Call Trace|Kernel panic/
}

function kernel_hit(line) {
	nhits++
	if (nhits <= 40)
		hits = hits (hits != "" ? "\n" : "") (during != "" ? "[during " during "] " : "") line
}

BEGIN {
	npass = nfail = nskip = 0
	inprog = 0
	section = ""
	during = ""
	scanning = 0
}

{
	sub(/\r+$/, "")
}

# The harness puts an empty line before each marker.
/^$/ {
	next
}

# Kernel log dump: scan what was logged from insmod on.
section == "dmesg" && !/^@@KVMM /  {
	if ($0 ~ /kvmm-harness: insmod/)
		scanning = 1
	if ($0 ~ /kvmm-harness: start /) {
		during = $0
		sub(/.*kvmm-harness: start /, "", during)
	} else if ($0 ~ /kvmm-harness: end /) {
		during = ""
	} else if ($0 ~ /kvmm-harness: rmmod/) {
		during = "rmmod"
	} else if (scanning && kernel_bad($0)) {
		kernel_hit($0)
	}
	if (live && verbose)
		print "  | " $0
	next
}

# The names of the tests of a program that exited 77, one a line.
section == "list" && !/^@@KVMM / {
	nlist++
	listed[nlist] = trim($0)
	next
}

# A program that exited 77 and never listed its tests fails.
function whole_unlisted() {
	if (whole != "")
		fail(whole, "exit status 77 (cannot run here: " (wholewhy != "" ? wholewhy : \
			"no reason printed") "), and the harness got no list of its tests")
	whole = ""
}

# A kmemleak report is a list of objects, each starting "unreferenced object".
# Without a scope on the marker every object counts (any kernel); with one
# ("suite", "unload LO HI"), an object counts when its report names kvmm or a
# backtrace address lies in LO-HI (where kvmm.ko was before rmmod); the
# others are listed as notes.
function leak_end() {
	if (objtext == "")
		return
	if (leakscope == "" || objkvmm) {
		leaks++
		if (nleak < 60)
			leaktext = leaktext (leaktext != "" ? "\n" : "") objtext
		nleak += split(objtext, tmp, "\n")
	} else {
		otherleaks++
		if (nother < 30)
			othertext = othertext (othertext != "" ? "\n" : "") objtext
		nother += split(objtext, tmp, "\n")
	}
	objtext = ""
	objkvmm = 0
}

section == "kmemleak" && !/^@@KVMM / {
	if ($0 ~ /unreferenced object/)
		leak_end()
	objtext = objtext (objtext != "" ? "\n" : "") $0
	if ($0 ~ /kvmm/)
		objkvmm = 1
	if (leaklo != "" && match($0, /\[<[0-9a-f]+>\]/)) {
		addr = substr($0, RSTART + 2, RLENGTH - 4)
		if (length(addr) == 16 && addr >= leaklo && addr < leakhi)
			objkvmm = 1
	}
	next
}

/^@@KVMM / {
	m = $2
	if (m == "BEGIN") {
		began = 1
		if (live)
			printf "%s: VM up (kernel %s), %d program(s)\n", label, $5, $4
	} else if (m == "MOUNT-FAILED") {
		fail("test disk " $4 " mounted", "disk " $3 " could not be mounted on " $4 ":")
		after = "msg"
	} else if (m == "INSMOD") {
		after = ""
		if ($3 == 0) {
			pass("insmod kvmm.ko")
		} else {
			fail("insmod kvmm.ko", "insmod exited with " $3 "; no program ran")
			after = "msg"
		}
	} else if (m == "START") {
		whole_unlisted()
		inprog = 1
		prog = $3
		nbuf = 0
		planned = results = pfails = plans = dups = 0
		after = ""
		if (live)
			printf "%s: [%d/%d] %s\n", label, $4, $5, prog
	} else if (m == "EXIT") {
		inprog = 0
		rc = $4
		secs = $5
		after = ""
		if (mode == "bench") {
			if (rc == 0) {
				pass(prog)
			} else {
				fail(prog, ($6 == 1 ? "timed out after " secs " s" : "exit status " rc))
				addmsg(buffered())
			}
		} else if ($6 == 1) {
			fail(prog, "timed out after " secs " s")
			after = "msg"
			addmsg(buffered())
		} else if (results == 0 && rc == 77) {
			# Cannot run here at all: the LIST that follows names its tests.
			whole = prog
			wholewhy = last_line()
			nbuf = 0
		} else if (results == 0) {
			if (rc == 0) {
				pass(prog)
			} else {
				fail(prog, (rc > 128 ? "killed by signal " rc - 128 : "exit status " rc) \
					", no test results")
				addmsg(buffered())
			}
		} else if (rc > 128) {
			fail(prog, "killed by signal " rc - 128 " after " results " test result(s)")
			addmsg(buffered())
		} else if (rc != 0 && pfails == 0) {
			fail(prog, "exit status " rc " after " results " of " planned \
				" planned tests, none failing")
			addmsg(buffered())
		} else if (planned > results) {
			fail(prog, "ran " results " of " planned " planned tests")
			addmsg(buffered())
		}
		if (dups > 0)
			fail(prog ": each test reports once", dups " test result(s) came twice: a " \
				"forked child went on running tests (end children with _exit, and reset " \
				"cmocka's signal handlers in a child that should die of a signal)")
		if (live)
			printf "  (%s: %s s, exit %s)\n", prog, secs, rc
	} else if (m == "LIST") {
		after = ""
		section = "list"
		nlist = 0
	} else if (m == "LIST-END") {
		section = ""
		if (whole == $3 && $4 == 0 && nlist > 0) {
			for (j = 1; j <= nlist; j++)
				skip(whole ": " listed[j], wholewhy)
			whole = ""
		} else {
			whole_unlisted()
		}
	} else if (m == "POOL") {
		# Judge a program by what it leaked itself: a leak that was there
		# before it ran was reported for the program that made it.
		after = ""
		if ($5 == "0")
			pass($3 ": pool_used_bytes returns to 0")
		else if ($4 == "none" || $5 + 0 > $4 + 0)
			fail($3 ": pool_used_bytes returns to 0", "pool_used_bytes is " $5 \
				" after the program exited (" $4 " before it)")
		else if (live)
			printf "  note  pool_used_bytes was already %s before %s ran\n", $4, $3
	} else if (m == "STRAY") {
		after = ""
		s = $0
		sub(/^@@KVMM STRAY [^ ]+ /, "", s)
		fail($3 ": leaves no processes behind", "killed after it exited: " s)
	} else if (m == "RELOAD") {
		after = ""
		if ($4 != 0) {
			fail($3 ": module reloads", "insmod after the program exited with " $4)
			after = "msg"
		} else if (live) {
			printf "  note  %s unloaded kvmm; reloaded\n", $3
		}
	} else if (m == "RMMOD") {
		after = ""
		rmmod_seen = 1
		if ($3 == 0) {
			pass("rmmod after suite")
		} else {
			fail("rmmod after suite", "rmmod exited with " $3)
			after = "msg"
		}
	} else if (m == "RMMOD-SKIPPED") {
		after = ""
		rmmod_seen = 1
	} else if (m == "DMESG-BEGIN") {
		section = "dmesg"
		dmesg_seen = 1
	} else if (m == "DMESG-END") {
		section = ""
	} else if (m == "KMEMLEAK-BEGIN") {
		section = "kmemleak"
		kmemleak_seen = 1
		leakscope = $3
		leaklo = leakhi = ""
		if ($3 == "unload" && length($4) == 16 && length($5) == 16) {
			leaklo = $4
			leakhi = $5
		}
		objtext = ""
		objkvmm = 0
	} else if (m == "KMEMLEAK-END") {
		leak_end()
		section = ""
	} else if (m == "END") {
		whole_unlisted()
		ended = 1
	}
	next
}

# Output of a program.
inprog {
	if (live && (verbose || mode == "bench"))
		print "  | " $0
	if (mode == "bench") {
		keep($0)
		next
	}
	if ($0 ~ /^1\.\.[0-9]+/) {
		n = $0
		sub(/^1\.\./, "", n)
		planned += n + 0
		plans++
		next
	}
	if ($0 ~ /^(not )?ok [0-9]+/) {
		name = $0
		num = $0
		sub(/^(not )?ok /, "", num)
		sub(/[^0-9].*/, "", num)
		key = prog SUBSEP plans SUBSEP num
		skipped = (name ~ /# SKIP/)
		if (skipped)
			sub(/.*# SKIP */, "", name)
		else
			sub(/^(not )?ok [0-9]+ *(- *)?/, "", name)
		name = prog ": " trim(name)
		ok = ($0 ~ /^ok/)
		if (key in seen) {
			# The same test reported again: a forked child went on
			# running tests. A failure anywhere fails the test once.
			dups++
			after = ""
			if (skipped || ok) {
				nbuf = 0
			} else if (seen[key] == "fail") {
				msgidx = fidx[key]
				addmsg(buffered())
				after = "msg"
			} else {
				if (seen[key] == "ok")
					npass--
				else
					nskip--
				pfails++
				seen[key] = "fail"
				fail(name, "")
				fidx[key] = nfail
				addmsg(buffered())
				after = "msg"
			}
			next
		}
		results++
		after = ""
		if (skipped) {
			seen[key] = "skip"
			skip(name, last_line())
			nbuf = 0
		} else if (ok) {
			seen[key] = "ok"
			nbuf = 0
			pass(name)
		} else {
			seen[key] = "fail"
			pfails++
			fail(name, "")
			fidx[key] = nfail
			addmsg(buffered())
			after = "msg"
		}
		next
	}
	# cmocka's group summary ("# ok - group", "# not ok - group").
	if ($0 ~ /^# (not )?ok - /)
		next
	if (after == "msg" && $0 ~ /^# /) {
		addmsg($0)
		next
	}
	after = ""
	keep($0)
	next
}

# Harness command output (insmod, rmmod) after a failing marker.
after == "msg" {
	addmsg($0)
	next
}

END {
	if (live)
		exit 0
	if (!began) {
		# Show the end of the console: why the kernel or /init stopped.
		n = 0
		while (console != "" && (getline line < console) > 0) {
			sub(/\r+$/, "", line)
			tailbuf[n++ % 25] = line
		}
		close(console)
		msg = "the VM printed no start marker; the console ended with:"
		for (j = (n > 25 ? n - 25 : 0); j < n; j++)
			msg = msg "\n" tailbuf[j % 25]
		fail("vm boots", msg)
	}
	if (timedout) {
		fail("vm finished in time", "the VM ran out of its " vmlimit " s" \
			(inprog ? " while running " prog : ""))
	} else if (began && !ended) {
		fail("vm ran the whole suite", "the VM stopped early" \
			(inprog ? " while running " prog : "") "; see " console)
	} else if (began) {
		pass("vm finished in time")
	}
	if (began && !inprog && !rmmod_seen && !timedout && ended)
		fail("rmmod after suite", "no rmmod result")
	if (!dmesg_seen && console != "") {
		# No kernel log dump: read what reached the console after insmod.
		during = ""
		scanning = 0
		while ((getline line < console) > 0) {
			sub(/\r+$/, "", line)
			if (line ~ /^@@KVMM (INSMOD|BEGIN)/)
				scanning = 1
			if (line ~ /^@@KVMM START /) {
				split(line, w, " ")
				during = w[3]
			} else if (scanning && kernel_bad(line)) {
				kernel_hit(line)
			}
		}
		close(console)
	}
	if (nhits > 0) {
		fail("kernel log clean", nhits " suspicious kernel log line(s)" \
			(nhits > 40 ? ", first 40" : "") ":\n" hits)
	} else if (began) {
		pass("kernel log clean")
	}
	if (kmemleak_seen) {
		if (leaks > 0)
			fail("kmemleak clean", leaks " unreferenced object(s):\n" leaktext)
		else
			pass("kmemleak clean")
		if (otherleaks > 0)
			printf "note: kmemleak also lists %d object(s) kvmm has no part in:\n%s\n", \
				otherleaks, othertext
	}
	if (nskip > 0) {
		print ""
		print "Skipped, and why:"
		for (k = 1; k <= nskip; k++)
			printf "  SKIP  %s: %s\n", sname[k], swhy[k]
	}
	if (nfail > 0) {
		print ""
		print "Failures:"
		for (k = 1; k <= nfail; k++) {
			printf "FAIL: %s\n", fname[k]
			nl = split(fmsg[k], ml, "\n")
			for (j = 1; j <= nl && j <= 60; j++)
				if (ml[j] != "")
					printf "    %s\n", ml[j]
			if (nl > 60)
				printf "    ... (%d more lines)\n", nl - 60
		}
		print ""
	}
	printf "%s: %d passed, %d failed, %d skipped\n", label, npass, nfail, nskip
	exit (nfail > 0 ? 1 : 0)
}
