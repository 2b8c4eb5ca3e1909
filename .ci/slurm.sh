# Sourced by .ci/run (as root): a single-node SLURM cluster on loopback for the cluster tests, with
# accounting (slurmdbd on a local MariaDB), since submitit follows its jobs through `sacct`: without it a
# cancelled job is never seen to end. This host is the controller and its only node; two partitions,
# `debug` (the default) and `long`, so that a test can see a chosen partition reach the scheduler.
# Idempotent: what is installed is not installed again, what runs is not started again, and a SLURM
# configuration this script did not write (a machine with a SLURM of its own) is left alone.
slurm_say() { echo "slurm.sh: $*"; }

slurm_packages="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  slurm_say "installing $slurm_packages"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $slurm_packages >/dev/null
fi

slurm_host=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/mysqld
chown munge:munge /run/munge && chmod 0755 /run/munge
chown mysql:mysql /run/mysqld

# munge: the key the packages made, or a new one
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  slurm_say "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi

# MariaDB for slurmdbd: a `slurm` user on loopback
if ! mariadb-admin ping --silent >/dev/null 2>&1; then
  slurm_say "starting MariaDB"
  (runuser -u mysql -- mariadbd --skip-networking=0 --bind-address=127.0.0.1 >/var/log/slurm/mariadb.log 2>&1 &)
  for _ in $(seq 60); do mariadb-admin ping --silent >/dev/null 2>&1 && break; sleep 0.5; done
  mariadb-admin ping --silent >/dev/null 2>&1 || { slurm_say "MariaDB did not start; see /var/log/slurm/mariadb.log"; return 1 2>/dev/null || exit 1; }
fi
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            ALTER USER 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

slurm_marker="# written by pxp-bench's .ci/slurm.sh"
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$slurm_marker" /etc/slurm/slurm.conf; then
  slurm_say "/etc/slurm/slurm.conf is not ours: left alone, as is this host's SLURM"
  slurm_own=no
else
  slurm_own=yes
fi
if [ "$slurm_own" = yes ]; then
cat > /etc/slurm/slurmdbd.conf <<EOF
$slurm_marker
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 0600 /etc/slurm/slurmdbd.conf

# the node as slurmd sees it (its cores and memory), without the uptime
slurm_node=$(slurmd -C | head -n 1)
cat > /etc/slurm/slurm.conf <<EOF
$slurm_marker
ClusterName=pxp
SlurmctldHost=$slurm_host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
$slurm_node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$slurm_host Default=YES MaxTime=INFINITE State=UP
PartitionName=long Nodes=$slurm_host MaxTime=INFINITE State=UP
EOF

if ! pgrep -x slurmdbd >/dev/null; then
  slurm_say "starting slurmdbd"
  slurmdbd
  for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
fi
sacctmgr -n list cluster format=cluster | grep -qw pxp || sacctmgr -i add cluster pxp >/dev/null
if ! pgrep -x slurmctld >/dev/null; then
  slurm_say "starting slurmctld"
  slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
  slurm_say "starting slurmd"
  slurmd
fi
fi
for _ in $(seq 60); do
  state=$(sinfo -h -n "$slurm_host" -o %T 2>/dev/null | head -n 1)
  case "$state" in idle*|mix*|alloc*) break ;; down*|drain*) scontrol update nodename="$slurm_host" state=resume 2>/dev/null ;; esac
  sleep 0.5
done
case "$state" in
  idle*|mix*|alloc*) slurm_say "cluster up: node $slurm_host ($state); partitions: $(sinfo -h -o %P | tr '\n' ' ')" ;;
  *) slurm_say "the node did not come up (state '$state'); see /var/log/slurm/" ; return 1 2>/dev/null || exit 1 ;;
esac
